"""Event ingest: validate at the edge, update the live view, hand batches to the workers."""
