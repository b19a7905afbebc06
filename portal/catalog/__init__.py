"""Customers and meters: what events may be counted against. Owns the tables `customers`
and `meters`."""
