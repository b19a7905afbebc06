"""API keys: creation, hashing, and the Bearer-token guard. Owns the table `api_keys`."""
