"""Quantities as the API takes them: exact decimal text, checked before anything is sent.

Every method that sends a quantity (`record`, `check`, `check_many`, `amend`, in both
clients) goes through `quantity_text`, so one rule decides what leaves the process.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

Quantity = Decimal | int | str | float

# The portal's bounds on every quantity (numeric(32, 12)): 0 <= q < 10^20, at most 12
# decimal places. Past them it refuses the event (record) or the request (check, amend).
MAX_INTEGER_DIGITS = 20
MAX_DECIMAL_PLACES = 12


def quantity_text(value: Quantity) -> str:
    """`value` as plain decimal text: no exponent ("1E+3" and 1e3 become "1000", 1e-05
    becomes "0.00001"), the digits given otherwise kept ("2.50" stays "2.50"; zeros past
    the twelfth decimal place are dropped). A float is read by its shortest repr (0.1 is
    "0.1"); prefer Decimal.

    Raises TypeError for a bool or a non-number type, ValueError for text that is not a
    number and for what the portal refuses: NaN, infinities, a negative number, 10^20 or
    more, more than 12 decimal places (0.1 + 0.2 as a float has 17)."""
    if isinstance(value, bool):
        raise TypeError("quantity: a number is expected, not a bool")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"quantity: not a number: {value!r}") from exc
    elif isinstance(value, Decimal):
        number = value
    else:
        raise TypeError(f"quantity: Decimal, int, str or float expected, got {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"quantity: must be a finite number, not {value!r}")
    if number < 0:
        raise ValueError(f"quantity: must not be negative: {value!r}")
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # a finite number's
    # Judged by digits and exponent before any text is made: 1e999999999 costs nothing.
    if not number:
        return "0" if exponent < -MAX_DECIMAL_PLACES else format(number.copy_abs(), "f")  # -0 is 0
    if number.adjusted() >= MAX_INTEGER_DIGITS:
        raise ValueError(f"quantity: must be less than 10^{MAX_INTEGER_DIGITS}: {value!r}")
    if exponent < -MAX_DECIMAL_PLACES:
        # Zeros past the twelfth decimal place carry nothing: the fraction's zeros are dropped.
        zeros = 0
        while zeros < -exponent and digits[-1 - zeros] == 0:
            zeros += 1
        if exponent + zeros < -MAX_DECIMAL_PLACES:
            raise ValueError(f"quantity: at most {MAX_DECIMAL_PLACES} decimal places: {value!r}")
        number = Decimal((0, digits[: len(digits) - zeros], exponent + zeros))
    return format(number, "f")
