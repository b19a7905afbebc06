"""`usage-portal`, the one command line: `main` parses and dispatches; the other modules
hold each command group's work.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from portal.infrastructure.settings import Settings

# How a command gets its settings: the servers found, or the embedded ones started for its
# run (the second item, stopped when the command ends; None when nothing was started).
SettingsFor = Callable[[argparse.Namespace], tuple[Settings, Any]]
