"""The only module that talks HTTP to the GeoVec backend (API under ``/v1``).

Two ways in, neither blocks the UI thread:

* :class:`GeoVecClient` makes blocking calls through ``QgsBlockingNetworkRequest``;
  use it only inside a ``QgsTask.run()`` or a Processing algorithm (worker threads).
* :func:`get_json_async` sends one request through ``QgsNetworkAccessManager`` and
  calls back on the UI thread when the reply arrives (used for ``/health``).

Request and response bodies follow ``backend/schemas.py`` / ``backend/openapi.json``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import QgsBlockingNetworkRequest, QgsFeedback, QgsNetworkAccessManager
from qgis.PyQt.QtCore import QByteArray, QUrl
from qgis.PyQt.QtNetwork import QNetworkReply, QNetworkRequest

from .params import Connection, IndexParams, SearchParams
from .wording import gui_hint, gui_text

API = "/v1"
#: (method, path template) of every route the plugin calls; the contract test checks them.
ROUTES: dict[str, tuple[str, str]] = {
    "health": ("GET", "/v1/health"),
    "models": ("GET", "/v1/models"),
    "load_model": ("POST", "/v1/models/load"),
    "indexes": ("GET", "/v1/indexes"),
    "create_index": ("POST", "/v1/indexes"),
    "open_index": ("POST", "/v1/indexes/open"),
    "index_info": ("GET", "/v1/indexes/info"),
    "start_job": ("POST", "/v1/jobs"),
    "jobs": ("GET", "/v1/jobs"),
    "job": ("GET", "/v1/jobs/{job_id}"),
    "cancel_job": ("POST", "/v1/jobs/{job_id}/cancel"),
    "search": ("POST", "/v1/search"),
    # analyst workflows (bodies from plugin/workflow_params.py)
    "classify": ("POST", "/v1/classify"),
    "fewshot": ("POST", "/v1/fewshot"),
    "refine": ("POST", "/v1/refine"),
    "locate": ("POST", "/v1/locate"),
    "ask": ("POST", "/v1/ask"),
    "search_vector": ("POST", "/v1/search/vector"),
    "change": ("POST", "/v1/change"),  # compare dates (plugin/processing/alg_change.py)
}


class BackendError(Exception):
    """A failed backend call: what went wrong and what to do about it."""

    def __init__(self, message: str, hint: str = "", *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status
        self.code = code
        self.details = ""  # the backend's own hint when it was a command line (for the log panel)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def default_token_file() -> Path:
    """``GEOVEC_TOKEN_FILE``, else ``<user config dir>/geovec/server.json`` as platformdirs computes it."""
    env = os.environ.get("GEOVEC_TOKEN_FILE")
    if env:
        return Path(env)
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "geovec" / "geovec" / "server.json"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "geovec" / "server.json"
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "geovec" / "server.json"


def read_token_file(path: str | Path | None = None) -> dict[str, Any] | None:
    """The ``{"url", "token", "pid"}`` the server wrote, or None when absent or unreadable."""
    path = Path(path) if path else default_token_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("url"):
        return None
    return data


def _request(conn: Connection, path: str, query: dict[str, Any] | None = None) -> QNetworkRequest:
    url = conn.base + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    req = QNetworkRequest(QUrl(url))
    req.setRawHeader(b"Accept", b"application/json")
    req.setRawHeader(b"Content-Type", b"application/json")
    if conn.token:
        req.setRawHeader(b"Authorization", f"Bearer {conn.token}".encode())
    req.setAttribute(QNetworkRequest.CacheLoadControlAttribute, QNetworkRequest.AlwaysNetwork)
    req.setAttribute(QNetworkRequest.CacheSaveControlAttribute, False)
    return req


def _error_from_body(status: int | None, raw: bytes, fallback: str) -> BackendError:
    """Turn an ErrorBody ``{error, detail, hint}`` (or FastAPI's ``{detail}``) into a BackendError."""
    try:
        body = json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI validation list
            detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
        message = str(detail or body.get("error") or fallback)
        hint = str(body.get("hint") or "")
        code = str(body.get("error") or "")
    else:
        message, hint, code = fallback, "", ""
    if status == 401 or status == 403:
        hint = hint or "the backend refused the token: check the token file in GeoVec > Settings"
    error = BackendError(gui_text(message), gui_hint(hint, code), status=status, code=code)
    said = [t for t, gui in ((message, error.message), (hint, error.hint)) if t != gui]
    error.details = "backend said: " + " — ".join(said) if said else ""
    return error


def _unreachable(conn: Connection, message: str) -> BackendError:
    return BackendError(
        f"GeoVec backend not reachable at {conn.base}: {message}",
        "press Connect in the GeoVec dock to start it, or check the backend URL in GeoVec > Settings",
        code="unreachable",
    )


class GeoVecClient:
    """Blocking JSON calls to the backend. Only for worker threads (QgsTask.run, Processing)."""

    def __init__(self, conn: Connection, feedback: QgsFeedback | None = None) -> None:
        self.conn = conn
        self.feedback = feedback

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """Send one request and return the decoded JSON; raise :class:`BackendError` on any failure."""
        req = _request(self.conn, path, query)
        blocking = QgsBlockingNetworkRequest()
        data = QByteArray(json.dumps(body).encode("utf-8")) if body is not None else QByteArray(b"")
        if method == "GET":
            err = blocking.get(req, True, self.feedback)
        elif method == "POST":
            err = blocking.post(req, data, True, self.feedback)
        elif method == "DELETE":
            err = blocking.deleteResource(req, self.feedback)
        else:
            raise ValueError(f"unsupported HTTP method {method!r}; use GET, POST or DELETE")
        reply = blocking.reply()
        status = reply.attribute(QNetworkRequest.HttpStatusCodeAttribute)
        raw = bytes(reply.content())
        if status is None:  # never reached the server
            raise _unreachable(self.conn, blocking.errorMessage() or "no reply")
        if err != QgsBlockingNetworkRequest.NoError or int(status) >= 400:
            return_error = _error_from_body(int(status), raw, f"{method} {path} failed with HTTP {status}")
            raise return_error
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError) as e:
            raise BackendError(f"{method} {path} returned invalid JSON: {raw[:200]!r}") from e

    def _route(self, name: str, **fmt: str) -> tuple[str, str]:
        method, path = ROUTES[name]
        return method, path.format(**{k: urllib.parse.quote(v, safe="") for k, v in fmt.items()})

    def health(self) -> dict[str, Any]:
        return self.call(*self._route("health"))

    def models(self) -> list[dict[str, Any]]:
        return self.call(*self._route("models"))

    def load_model(self, model: str, device: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model}
        if device and device != "auto":
            body["device"] = device
        return self.call(*self._route("load_model"), body)

    def indexes(self) -> list[dict[str, Any]]:
        return self.call(*self._route("indexes"))

    def index_info(self, path: str) -> dict[str, Any]:
        return self.call(*self._route("index_info"), query={"path": path})

    def open_index(self, path: str) -> dict[str, Any]:
        return self.call(*self._route("open_index"), {"path": path})

    def start_job(self, params: IndexParams) -> dict[str, Any]:
        return self.call(*self._route("start_job"), params.to_request())

    def jobs(self) -> list[dict[str, Any]]:
        return self.call(*self._route("jobs"))

    def job(self, job_id: str) -> dict[str, Any]:
        return self.call(*self._route("job", job_id=job_id))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self.call(*self._route("cancel_job", job_id=job_id), {})

    def search(self, params: SearchParams) -> dict[str, Any]:
        return self.call(*self._route("search"), params.to_request())

    def workflow(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST`` one of the workflow routes (classify, fewshot, refine, locate, ask, search_vector, change)."""
        return self.call(*self._route(name), body)


class PendingGet:
    """An asynchronous GET in flight; :meth:`cancel` drops it without calling back."""

    def __init__(self, reply: QNetworkReply) -> None:
        self.reply = reply
        self.cancelled = False
        self.finished = False
        self.slot: Callable[[], None] | None = None

    def cancel(self) -> None:
        if self.finished or self.cancelled:
            return
        self.cancelled = True
        if self.slot is not None:
            try:
                self.reply.finished.disconnect(self.slot)
            except (TypeError, RuntimeError):
                pass
        self.reply.abort()
        self.reply.deleteLater()


def get_json_async(
    conn: Connection,
    path: str,
    callback: Callable[[Any, BackendError | None], None],
    timeout_ms: int = 5000,
) -> PendingGet:
    """GET ``path`` without blocking; ``callback(data, error)`` runs on the UI thread (unless cancelled)."""
    req = _request(conn, path)
    req.setTransferTimeout(timeout_ms) if hasattr(req, "setTransferTimeout") else None
    reply = QgsNetworkAccessManager.instance().get(req)
    pending = PendingGet(reply)

    def done() -> None:
        if pending.cancelled or pending.finished:
            return
        pending.finished = True
        status = reply.attribute(QNetworkRequest.HttpStatusCodeAttribute)
        raw = bytes(reply.readAll())
        err = reply.error()
        error_text = reply.errorString()
        reply.deleteLater()
        if status is None:
            callback(None, _unreachable(conn, error_text))
        elif err != QNetworkReply.NoError or int(status) >= 400:
            callback(None, _error_from_body(int(status), raw, f"GET {path} failed with HTTP {status}"))
        else:
            try:
                data = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                callback(None, BackendError(f"GET {path} returned invalid JSON: {raw[:200]!r}"))
                return
            callback(data, None)

    pending.slot = done
    reply.finished.connect(done)
    return pending
