"""What every ``geovec`` sub-command module shares: the usage error and request validation."""

from __future__ import annotations

from typing import Any


class UsageError(Exception):
    """A bad command line (raised by the parser instead of printing usage and exiting)."""


def validated(schema: Any, /, **fields: Any) -> Any:
    """``schema(**fields)``; a pydantic validation error becomes a one-line usage error naming the field."""
    from pydantic import ValidationError

    try:
        return schema(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "__root__")
        msg = str(first.get("msg", e)).removeprefix("Value error, ")
        raise UsageError(f"{where + ': ' if where else ''}{msg}") from None
