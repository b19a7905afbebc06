"""Entitlements: how much of a meter a customer may use in a billing period, answered
from the live counters."""
