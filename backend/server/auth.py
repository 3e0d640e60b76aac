"""Guards every request before FastAPI sees it: Host header, bearer token, body size.

A pure ASGI middleware (no per-request task or thread), in this order:

1. ``Host`` must be a loopback name (127.0.0.1, localhost, ::1, any port) -> else 403.
   A web page that rebinds its DNS name to 127.0.0.1 still sends its own name
   as Host, so it is refused (DNS rebinding). ``--allow-remote`` also accepts
   the bind address, or any name when bound to a wildcard address.
2. ``Authorization: Bearer <token>`` on every path but ``/v1/health`` -> else 401
   (constant-time comparison). ``/v1/health`` without the token says only status and version.
3. The body is capped at ``max_body`` bytes: a larger ``Content-Length`` is refused
   without being passed on, and a chunked/streamed body is counted as it arrives -> 413.
   The refused body is read and dropped first (up to :data:`DRAIN_LIMIT`), so the
   client, still sending, reads the 413 instead of a connection reset.

Every refusal is an ErrorBody ``{error, detail, hint}``. There is no CORS
middleware: browsers get no ``Access-Control-Allow-Origin`` from this server.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .settings import Settings, is_loopback

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/v1/health"})
#: Scope key: whether the request carried the right token (public routes answer strangers with less).
AUTHENTICATED = "geovec.authenticated"
#: A streamed body over the cap is read and dropped up to this many bytes before the 413 is sent
#: (a client still sending when the server closes would see a reset instead of the answer).
DRAIN_LIMIT = 64 * 1024 * 1024


def split_host(value: str) -> str:
    """The host part of a Host header value (``[::1]:8000`` -> ``::1``, ``a:80`` -> ``a``)."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


async def send_error(send: Send, status: int, error: str, detail: str, hint: str = "",
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a complete JSON ErrorBody response."""
    body = json.dumps({"error": error, "detail": detail, "hint": hint}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": hdrs + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Host check, bearer token and body cap (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.token = settings.token.encode()
        self.max_body = settings.max_body
        self.allow_any_host = settings.allow_remote and settings.host in ("0.0.0.0", "::", "")
        self.extra_hosts = {settings.host.lower()} if settings.allow_remote else set()

    def host_ok(self, host: str) -> bool:
        name = split_host(host).lower()
        return self.allow_any_host or is_loopback(name) or name in self.extra_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        host = headers.get("host", b"").decode("latin-1")
        if not self.host_ok(host):
            log.warning("refused Host %r from %s", host, scope.get("client"))
            await send_error(send, 403, "forbidden_host",
                             f"Host header {host!r} is not a loopback name (127.0.0.1, localhost, ::1)",
                             "connect to http://127.0.0.1:<port>; other host names are refused")
            return
        authenticated = self.token_ok(headers.get("authorization", b""))
        scope[AUTHENTICATED] = authenticated  # a public route may say more to a caller with the token
        if scope.get("path") not in PUBLIC_PATHS and not authenticated:
            await send_error(send, 401, "unauthorized",
                             "missing or wrong token: send 'Authorization: Bearer <token>'",
                             "read the token from the server's token file (server.json, mode 0600)",
                             [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await send_error(send, 400, "bad_request", f"Content-Length {length!r} is not an integer")
                return
            if n > self.max_body:
                if n <= DRAIN_LIMIT:
                    await _drain(receive)
                await self._too_large(send, n)
                return
        body, more, total = [], True, 0
        while more:  # read the (capped) body up front, then replay it to the app
            msg = await receive()
            if msg["type"] != "http.request":
                await self.app(scope, _replay([msg], receive), send)
                return
            chunk = msg.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                if msg.get("more_body", False):
                    total += await _drain(receive, DRAIN_LIMIT - total)
                await self._too_large(send, total)
                return
            body.append(chunk)
            more = msg.get("more_body", False)
        replay: list[Message] = [{"type": "http.request", "body": b"".join(body), "more_body": False}]
        await self.app(scope, _replay(replay, receive), send)

    def token_ok(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(value.strip(), self.token)

    async def _too_large(self, send: Send, n: int) -> None:
        await send_error(send, 413, "payload_too_large",
                         f"request body of {n} bytes or more exceeds the cap of {self.max_body} bytes",
                         "send fewer or smaller inputs, or raise GEOVEC_MAX_BODY when starting the server",
                         [(b"connection", b"close")])


async def _drain(receive: Receive, limit: int = DRAIN_LIMIT) -> int:
    """Read and drop the rest of a request body (at most ``limit`` bytes); returns the bytes read."""
    read = 0
    while read <= limit:
        msg = await receive()
        read += len(msg.get("body", b""))
        if msg.get("type") != "http.request" or not msg.get("more_body", False):
            break
    return read


def _replay(messages: list[Message], receive: Receive) -> Receive:
    queue = list(messages)

    async def inner() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return inner
