"""HTTP plumbing every route shares: API-key auth, request checks, the OpenAPI document,
the process state and request dependencies, shared API structs, CSV cells.
"""
