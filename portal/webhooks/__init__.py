"""Outgoing billing webhooks (docs/webhooks.md): other domains call `service.announce`."""
