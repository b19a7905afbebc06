"""API keys: creation, hashing, and the Bearer-token guard."""
