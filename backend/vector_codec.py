"""Vectors as base64 text: little-endian float32, 4 bytes a value, no header.

JSON float lists cost a client and the server ~20 characters a value to write
and parse; a 1536-d vector is ~30 KB of text. The same vector as base64 float32
is 8 KB and decodes in microseconds. Requests may carry ``vector_b64`` instead
of ``vector``; replies carry ``*_b64`` fields when the request asks for
``vector_encoding="b64"``. Stdlib only: the thin CLI client imports this too.
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
from array import array
from collections.abc import Iterable

#: Most values a vector may carry (the same bound as the JSON ``vector`` fields).
MAX_VALUES = 16384

#: What the OpenAPI document says about every ``*_b64`` vector field.
B64_DOC = "base64 of the vector as little-endian float32 (4 bytes a value, no header)"


def to_b64(values: Iterable[float]) -> str:
    """``values`` (floats or a float32 array) as base64 little-endian float32."""
    tobytes = getattr(values, "astype", None)
    if tobytes is not None:  # a numpy array: no Python floats on the way
        return base64.b64encode(values.astype("<f4").tobytes()).decode("ascii")  # type: ignore[attr-defined]
    a = array("f", values)
    if sys.byteorder == "big":
        a.byteswap()
    return base64.b64encode(a.tobytes()).decode("ascii")


def from_b64(text: str, what: str = "vector_b64") -> list[float]:
    """Decode ``text`` into floats; ``ValueError`` naming ``what`` when it is not a finite float32 vector."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"{what} is not valid base64 ({e}); send base64 of little-endian float32 bytes") from None
    if not raw or len(raw) % 4:
        raise ValueError(f"{what} decodes to {len(raw)} bytes, not a whole number (> 0) of 4-byte float32 values")
    if len(raw) // 4 > MAX_VALUES:
        raise ValueError(f"{what} holds {len(raw) // 4} values; at most {MAX_VALUES}")
    a = array("f")
    a.frombytes(raw)
    if sys.byteorder == "big":
        a.byteswap()
    values = a.tolist()
    if not all(map(math.isfinite, values)):
        raise ValueError(f"{what} holds NaN or infinite values; send a finite embedding")
    return values
