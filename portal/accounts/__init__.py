"""Portal accounts: people who sign in, their roles, what they may see, and the audit log."""
