"""FastAPI dependencies as ``Annotated`` aliases, and the ErrorBody responses every route documents."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from ..schemas import ErrorBody
from .state import ServerState


def get_state(request: Request) -> ServerState:
    return request.app.state.geovec  # type: ignore[no-any-return]


State = Annotated[ServerState, Depends(get_state)]

#: Error responses documented on every authenticated route (bodies are ErrorBody).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request: the body is not JSON, or a bad Content-Length"},
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    403: {"model": ErrorBody, "description": "Host header is not a loopback name, or a path outside the allowed folders"},
    404: {"model": ErrorBody, "description": "no such index, folder, raster, model or job"},
    409: {"model": ErrorBody, "description": "busy (another writer, a job, the model), already exists, model mismatch, "
                                             "corrupt index, or an output that cannot be written (a folder in the "
                                             "way, read-only, its folder gone): error cannot_write"},
    413: {"model": ErrorBody, "description": "request body over the cap"},
    422: {"model": ErrorBody, "description": "invalid input (validation or a bad value)"},
    500: {"model": ErrorBody, "description": "a bug (error internal_error); the connection stays usable"},
    503: {"model": ErrorBody, "description": "no model can be loaded"},
    507: {"model": ErrorBody, "description": "no space left to write an output (error no_space); nothing half-written"},
}
