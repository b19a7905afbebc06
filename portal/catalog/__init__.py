"""Customers and meters: what events may be counted against."""
