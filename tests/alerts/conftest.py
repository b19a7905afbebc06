"""The alert tests' servers live in tests/sinks.py (loaded for the whole suite by
tests/conftest.py); the names are re-exported here for the modules that import them.
Fixtures are NOT imported here: a second definition would start a second session sink
on the same port."""

from tests.sinks import HttpReceiver, ReceivedMail, ReceivedRequest, SmtpServer, free_port, wait_for

__all__ = ["HttpReceiver", "ReceivedMail", "ReceivedRequest", "SmtpServer", "free_port", "wait_for"]
