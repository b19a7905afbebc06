"""Every CSV the portal writes, with cells a spreadsheet shows and never runs.

Spreadsheets read a cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage
return, which some of them skip before looking) as a formula: a dimension value such as
`=cmd|' /C calc'!A0` in an export would run when the file is opened (CSV injection).
Following OWASP, such a text cell is written with a leading single quote, which the
spreadsheet takes as "this is text" and does not show.

Cells are typed, and only text is neutralised. A number is given as `Decimal` or `int` and
written exactly (`format(value, "f")`: no exponent, the digits it carries, so `-12.50`
stays `-12.50`), never prefixed: a credit of -12.50 must stay a number a spreadsheet can
add up. A number that arrives as text is treated as text (a dimension value "-1" comes out
as `'-1`), so exports pass their numbers as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal

# A cell: text (neutralised), a number (written as is) or nothing (an empty cell).
Cell = str | Decimal | int | None

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """`value`, with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def cell_text(value: Cell) -> str:
    """What a cell holds in the file. Raises TypeError for anything else (a float, a bool):
    money and quantities are Decimal, and a bool is not a number of this domain."""
    if value is None:
        return ""
    if isinstance(value, str):
        return text_cell(value)
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"not a CSV cell: {value!r}")


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """A whole CSV file as RFC 4180 writes it: the header, then one line per row, lines
    ending in CRLF. With CRLF as the line end the csv module quotes a cell holding a lone
    carriage return too (with `\\n` alone it does not, and a reader then splits the row)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([text_cell(name) for name in header])
    writer.writerows([cell_text(value) for value in row] for row in rows)
    return buffer.getvalue()
