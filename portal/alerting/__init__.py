"""Alert rules, channels, evaluation and delivery records (the database side of alerts/)."""
