"""Running the product: health and readiness routes, `status`, heartbeats, the supervisor
of `up`, the scheduler role, dead letters, data quality and data gauges, operator tasks.
"""
