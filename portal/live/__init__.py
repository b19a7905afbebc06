"""The live view: Redis hourly counters, dedup markers and the freshness watermark."""
