"""Per-request context: the path policy of the allowed folders, and a last answer for the unexpected.

A pure ASGI middleware inside :class:`~.auth.GuardMiddleware`:

* every request runs inside :func:`geovec.backend.paths.confined` with the server's allowed
  roots, so every path field is gated as the body is validated (the ``AbsPath`` type) and
  every file reached from one (VRT sources, ``within`` files, layers, outputs) is checked
  by the same policy, on every route, without the route having to ask;
* an exception no handler turned into an answer becomes a 500 ErrorBody here and is not
  re-raised: Starlette's outermost handler would re-raise it after answering, and the
  server would then close the keep-alive connection under the client's next request.
"""

from __future__ import annotations

import logging

from ..paths import confined
from .auth import ASGIApp, Message, Receive, Scope, Send, send_error
from .settings import Settings

log = logging.getLogger(__name__)


class ConfineMiddleware:
    """Run each request confined to the allowed roots; answer the unexpected with a 500 ErrorBody."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.roots = tuple(settings.allowed_roots)
        self.log_file = settings.log_dir / "server.log"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        with confined(self.roots):
            try:
                await self.app(scope, receive, tracked)
            except Exception as exc:  # noqa: BLE001 - the one place the unexpected is answered
                log.error("%s %s failed unexpectedly", scope.get("method"), scope.get("path"), exc_info=exc)
                if started:
                    return  # the answer is under way; nothing more to say on this response
                await send_error(send, 500, "internal_error", f"unexpected {type(exc).__name__}: {exc}"[:500],
                                 f"this is a bug; the traceback is in {self.log_file}")
