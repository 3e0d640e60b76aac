"""The server's JSON response: never a 500 for a file name that is not valid UTF-8.

FastAPI's fast path serialises response models with pydantic, which refuses the
surrogate escapes such names arrive as; every route and error handler answers
with :class:`SafeJSONResponse` instead (see :mod:`geovec.backend.jsonsafe`).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from ..jsonsafe import dumps


class SafeJSONResponse(JSONResponse):
    """JSONResponse whose body is valid UTF-8 JSON for any string (lossless ``\\uXXXX`` escapes)."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")
