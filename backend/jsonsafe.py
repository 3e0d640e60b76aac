"""JSON that never fails on file names that are not valid UTF-8.

Such names reach Python as surrogate escapes (``'caf\\udce9.tif'``). UTF-8 cannot
encode them, so ``model_dump_json`` and a plain ``json.dumps(...).encode()`` raise.
Here the text is kept as is and JSON's ``\\uXXXX`` escapes carry it: the output is
valid JSON, and a JSON reader gets the very same string back (lossless).
"""

from __future__ import annotations

import json
from typing import Any


def dumps(data: Any, *, indent: int | None = None) -> str:
    """``json.dumps`` readable as UTF-8; ASCII escapes are used only when the data needs them."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False, separators=None)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(data, indent=indent, ensure_ascii=True, allow_nan=False)


def model_json(model: Any, *, indent: int | None = None) -> str:
    """A pydantic model as JSON via :func:`dumps` (``model_dump_json`` fails on surrogate escapes)."""
    return dumps(model.model_dump(mode="json"), indent=indent)
