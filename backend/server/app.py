"""The FastAPI application: ``create_app(settings)``.

Layers, outermost first: :class:`~.auth.GuardMiddleware` (Host, token, body cap),
:class:`~.confine.ConfineMiddleware` (the allowed folders for every path; the unexpected as a 500
ErrorBody that keeps the connection), exception handlers (every error is an ErrorBody; GeoVecError -> status via
``errors.http_status`` only), then one router per resource under ``/v1``. No
CORS middleware on purpose. The lifespan loads persisted jobs (resuming
interrupted ones), writes the token file, and on shutdown stops jobs cleanly,
closes every index and removes the token file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import GeoVecError, http_status
from ..schemas import ErrorBody
from .auth import GuardMiddleware
from .confine import ConfineMiddleware
from .responses import SafeJSONResponse
from .settings import Settings
from .state import ServerState

log = logging.getLogger(__name__)

DESCRIPTION = """GeoVec's local backend: index GeoTIFFs into multimodal embeddings and search them.

Every route but `/v1/health` needs `Authorization: Bearer <token>`; the token is in the
server's token file (`server.json`, mode 0600). The Host header must be a loopback name.
Every error is a JSON `ErrorBody` `{error, detail, hint}`.
"""


def _error(status: int, error: str, detail: str, hint: str = "", headers: dict[str, str] | None = None) -> JSONResponse:
    return SafeJSONResponse(ErrorBody(error=error, detail=detail, hint=hint).model_dump(), status_code=status,
                            headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "__root__"))
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, settings: Settings) -> None:
    """GeoVecError -> its status, validation -> 422, HTTP errors and the unexpected -> ErrorBody."""

    @app.exception_handler(GeoVecError)
    async def geovec_error(request: Request, exc: GeoVecError) -> JSONResponse:
        status = http_status(exc)
        log.info("%s %s -> %d %s: %s", request.method, request.url.path, status, exc.code, exc.message)
        return _error(status, exc.code, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "bad_input", _validation_detail(exc),
                      "check the request against the schema in backend/openapi.json")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        hint = "see the routes in backend/openapi.json" if exc.status_code in codes else ""
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not just the first route's
            headers["Allow"] = ", ".join(allowed_methods(request))
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), hint,
                      headers or None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed unexpectedly", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", f"unexpected {type(exc).__name__}: {exc}"[:500],
                      f"this is a bug; the traceback is in {settings.log_dir / 'server.log'}")


def allowed_methods(request: Request) -> list[str]:
    """The methods the app's OpenAPI document lists for the request's path (what ``Allow`` must say)."""
    import re

    path = request.url.path
    methods: set[str] = set()
    for template, ops in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods |= {m.upper() for m in ops}
    return sorted(methods)


def write_token_file(settings: Settings) -> None:
    """``{"url", "token", "pid"}`` to the token file: created 0600, atomically (temp file + rename)."""
    from .jobs import atomic_write_json

    settings.token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_json(settings.token_file, {"url": settings.url, "token": settings.token, "pid": os.getpid()})


def remove_token_file(settings: Settings) -> None:
    """Remove the token file if it is still ours (another server may have replaced it)."""
    import json

    try:
        data = json.loads(settings.token_file.read_text(encoding="utf-8"))
        if data.get("pid") == os.getpid() and data.get("token") == settings.token:
            settings.token_file.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``. Builds no model and opens no index until a request needs one."""
    from .routes import change, embed, health, indexes, jobs, models, search, workflows

    state = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio

        state.jobs.load()
        if settings.url:
            write_token_file(settings)
        log.info("GeoVec %s serving on %s (model %s, device %s)", __version__, settings.url or "(no url)",
                 settings.model or "none yet", settings.device)
        try:
            yield
        finally:
            log.info("shutting down: stopping jobs, closing indexes")
            await anyio.to_thread.run_sync(state.close)
            if settings.url:
                remove_token_file(settings)
            log.info("shut down cleanly")

    app = FastAPI(title="GeoVec backend", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json",
                  separate_input_output_schemas=False)
    app.state.geovec = state
    app.state.settings = settings
    install_error_handlers(app, settings)
    for mod in (health, models, indexes, jobs, search, embed, workflows, change):
        app.include_router(mod.router, prefix="/v1", default_response_class=SafeJSONResponse)
    app.add_middleware(ConfineMiddleware, settings=settings)
    app.add_middleware(GuardMiddleware, settings=settings)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema plus the bearer security scheme (health needs none)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                         separate_input_output_schemas=False)
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "token from the server's token file"}}
    schema["security"] = [{"bearer": []}]
    for path, ops in schema["paths"].items():
        if path == "/v1/health":
            for op in ops.values():
                op["security"] = []
    app.openapi_schema = schema
    return schema
