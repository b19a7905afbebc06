"""Every table of the database, in one `metadata`.

Importing this module imports each domain's `models.py`, so `metadata` holds all the table
models: Alembic compares it with the migrated database (`migrations/env.py`, checked by
tests/test_table_models.py), and the tests take the list of tables to empty from it. Code that
needs a domain's tables imports that domain's models, not this module."""

from __future__ import annotations

from sqlmodel import SQLModel

# Imported for their effect (hence F401): each module's table models add their tables to
# SQLModel.metadata when the module is first imported.
from portal.accounts import models as _accounts  # noqa: F401
from portal.alerting import models as _alerting  # noqa: F401
from portal.billing import models as _billing  # noqa: F401
from portal.catalog import models as _catalog  # noqa: F401
from portal.entitlements import models as _entitlements  # noqa: F401
from portal.ingest import models as _ingest  # noqa: F401
from portal.keys import models as _keys  # noqa: F401
from portal.live import models as _live  # noqa: F401
from portal.usage import models as _usage  # noqa: F401
from portal.webhooks import models as _webhooks  # noqa: F401

metadata = SQLModel.metadata
