"""Drop-in ingest endpoints for clients of OpenMeter, Lago and Stripe (see routes.py)."""
