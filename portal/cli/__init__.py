"""`usage-portal`, the one command line: `main` parses and dispatches; the other modules
hold each command group's work.
"""
