"""What the repository's modules share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Text, cast, literal
from sqlalchemy.dialects.postgresql import JSONB

# Only columns are read and written here, never objects a session would have to keep in step.
NO_SYNC = {"synchronize_session": False}


def ids(found: Any) -> list[int]:
    """A result's single column of ids, as ints."""
    return [int(i) for i in found.all()]


def jsonb_notice(notice_json: str) -> ColumnElement[Any]:
    """A notice as `notice_json` wrote it (decimals as strings), cast to jsonb by Postgres: the
    column type's own serializer would write the text again as one JSON string."""
    return cast(literal(notice_json, Text), JSONB)
