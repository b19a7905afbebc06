"""Usage portal: ingest, live usage, catalog and the web pages."""
