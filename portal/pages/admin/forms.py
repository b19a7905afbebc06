"""Admin forms: the values kept as typed, and each problem attached to the field it is about.

Schemas (msgspec) and services (Problem) word their errors as "field: what is wrong" or
"... - at `$.field`"; `Form.refuse` turns either into an error on that field, so the form
comes back (422) with the field named and marked, whatever layer found the mistake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.datastructures import FormMultiDict

UNPROCESSABLE = 422

_AT_FIELD = re.compile(r" - at `\$\.([A-Za-z]+)[^`]*`$")
_MISSING = re.compile(r"^Object missing required field `([A-Za-z]+)`")
_PREFIXED = re.compile(r"^([A-Za-z]+)(?:\[\d+\])?: ")


async def read_form(request: Request[Any, Any, Any]) -> FormMultiDict:
    """The submitted form (urlencoded or multipart; the CSRF guard already parsed it)."""
    return await request.form()


def text_of(data: FormMultiDict, name: str) -> str:
    value = data.get(name)
    return value.strip() if isinstance(value, str) else ""


def texts_of(data: FormMultiDict, name: str) -> list[str]:
    """Every value of a repeated field (checkboxes, multi-selects), blanks dropped."""
    return [v.strip() for v in data.getall(name, []) if isinstance(v, str) and v.strip()]


@dataclass(slots=True)
class Form:
    """What a person typed, and what is wrong with it, field by field."""

    labels: Mapping[str, str]
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # Plain-language rules for fields whose schema error would be cryptic (a regex).
    hints: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def fail(self, name: str, message: str) -> None:
        """The first problem of a field is the one shown."""
        self.errors.setdefault(name, message)

    def require(self, *names: str) -> None:
        """Every empty field among `names` is named at once (a schema stops at the first)."""
        for name in names:
            if not self.values.get(name):
                self.fail(name, "required")

    def refuse(self, message: str, *, default: str) -> None:
        """Attach a schema or service error message to the field it names (`default` if
        it names none this form has)."""
        name, said = default, message
        if match := _AT_FIELD.search(message):
            name, said = match.group(1), self.hints.get(match.group(1), message[: match.start()])
        elif match := _MISSING.match(message):
            name, said = match.group(1), "required"
        elif match := _PREFIXED.match(message):
            name, said = match.group(1), message[match.end() :]
        self.fail(name if name in self.labels else default, said)

    def summary(self) -> list[tuple[str, str]]:
        """(field, "Label: problem") in the order the fields appear on the form."""
        return [
            (name, f"{label}: {self.errors[name]}")
            for name, label in self.labels.items()
            if name in self.errors
        ]
