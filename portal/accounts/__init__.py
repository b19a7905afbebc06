"""Portal accounts: people who sign in, their roles, what they may see, and the audit log.
Owns the tables `users`, `user_customers`, `password_tokens` and `audit_log`."""
