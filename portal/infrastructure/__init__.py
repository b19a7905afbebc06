"""Infrastructure every domain stands on: settings, the database and its tables, the broker and
jobs sent after commit, logs, metrics, the embedded servers, errors, clocks and periods.
"""
