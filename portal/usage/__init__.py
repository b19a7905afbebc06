"""Reading usage: live (Redis) or billed (Postgres), by hour or by the customer's day."""
