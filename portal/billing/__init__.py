"""Authoritative billing: plans, subscriptions, rating, invoices and adjustments."""
