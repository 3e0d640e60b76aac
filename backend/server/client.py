"""A small client for a running ``geovec serve`` (used by ``geovec search --server URL``).

It reads the token from the token file the server wrote (``GEOVEC_TOKEN_FILE`` or
``<user config dir>/geovec/server.json``), so a user never copies it by hand.
Server errors come back as the same :class:`GeoVecError` subclasses the core raises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import (
    BusyError,
    GeoVecError,
    IndexCorruptError,
    InputError,
    ModelMismatchError,
    ModelUnavailableError,
    NotFoundError,
)
from ..schemas import IndexInfo, IndexRequest, JobProgress, SearchRequest, SearchResponse

_BY_CODE: dict[str, type[GeoVecError]] = {
    "not_found": NotFoundError, "busy": BusyError, "model_mismatch": ModelMismatchError,
    "index_corrupt": IndexCorruptError, "model_unavailable": ModelUnavailableError,
}


def default_token_file() -> Path:
    """``GEOVEC_TOKEN_FILE``, else ``<platformdirs user config dir>/geovec/server.json``."""
    env = os.environ.get("GEOVEC_TOKEN_FILE")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_config_path("geovec") / "server.json"


def read_token_file(path: str | Path | None = None) -> dict[str, Any]:
    """``{"url", "token", "pid"}``; NotFoundError with a hint when no server wrote one."""
    p = Path(path) if path else default_token_file()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NotFoundError(f"no readable server token file at {p}", "start a backend with `geovec serve`") from e
    if not isinstance(data, dict) or "token" not in data:
        raise NotFoundError(f"token file {p} has no token", "restart `geovec serve`")
    return data


class Client:
    """Blocking JSON calls to ``/v1``; ``url=None`` uses the URL in the token file.

    Standard library only (``http.client``, one kept-alive connection): the CLI's thin path
    pays no HTTP library import, a few hundred milliseconds on a busy 2-core machine.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, token_file: str | Path | None = None,
                 timeout: float = 300.0) -> None:
        from urllib.parse import urlsplit

        if token is None or url is None:
            data = read_token_file(token_file)
            token = token if token is not None else str(data["token"])
            url = url or str(data.get("url", ""))
        base = url.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"server URL {url!r} is not an http(s) URL", "give e.g. http://127.0.0.1:8765")
        self._https, self._host, self._port = parts.scheme == "https", parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = timeout
        self._conn: Any = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, target: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, str, bytes]:
        import http.client

        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        self._conn.request(method, target, body=data, headers=headers)
        r = self._conn.getresponse()
        return r.status, r.reason, r.read()

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        import http.client
        from urllib.parse import urlencode

        target = self._prefix + "/v1" + path + ("?" + urlencode(params) if params else "")
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {**self._headers, **({"Content-Type": "application/json"} if data is not None else {})}
        try:
            try:
                status, reason, raw = self._send(method, target, data, headers)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # a kept-alive connection the server closed meanwhile: once more, fresh
                status, reason, raw = self._send(method, target, data, headers)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise ModelUnavailableError(f"GeoVec backend at {self.base_url} not reachable: {e}",
                                        "start it with `geovec serve`, or check --server") from e
        if status >= 400:
            try:
                err = json.loads(raw)
            except ValueError:
                err = {"error": "http_error", "detail": raw[:300].decode("utf-8", "replace")}
            if not isinstance(err, dict):
                err = {"error": "http_error", "detail": str(err)[:300]}
            cls = _BY_CODE.get(err.get("error", ""), InputError if status < 500 else GeoVecError)
            if status in (401, 403):
                cls = GeoVecError
            raise cls(f"server: {err.get('detail', reason)} (HTTP {status})", err.get("hint", ""))
        return json.loads(raw)

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health")  # type: ignore[no-any-return]

    def search(self, req: SearchRequest) -> SearchResponse:
        return SearchResponse(**self.call("POST", "/search", req.model_dump(exclude_none=True)))

    def start_job(self, req: IndexRequest) -> JobProgress:
        return JobProgress(**self.call("POST", "/jobs", req.model_dump(exclude_none=True)))

    def job(self, job_id: str) -> JobProgress:
        return JobProgress(**self.call("GET", f"/jobs/{job_id}"))

    def index_info(self, path: str) -> IndexInfo:
        return IndexInfo(**self.call("GET", "/indexes/info", params={"path": path}))


def running_server(token_file: str | Path | None = None, timeout: float = 0.5) -> str | None:
    """The URL of a ``geovec serve`` that answers ``/v1/health`` within ``timeout`` s, else None."""
    try:
        data = read_token_file(token_file)
    except NotFoundError:
        return None
    pid, url = data.get("pid"), str(data.get("url") or "")
    if not url:
        return None
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    try:
        with Client(url, str(data["token"]), timeout=timeout) as c:
            c.health()
    except GeoVecError:
        return None
    return url


def call_via_server(route: str, req: Any, reply: type[Any], url: str | None = None, *,
                    token_file: str | Path | None = None) -> Any:
    """``reply`` parsed from ``POST /v1/<route>`` with ``req`` (a request model whose paths are absolute).

    A ``vector`` goes as ``vector_b64`` (base64 float32: a quarter of the JSON text, parsed at once).
    """
    from ..vector_codec import to_b64

    body = req.model_dump(exclude_none=True)
    if isinstance(body.get("vector"), list):
        body["vector_b64"] = to_b64(body.pop("vector"))
    with Client(url, token_file=token_file) as c:
        return reply(**c.call("POST", "/" + route, body))


def search_via_server(req: SearchRequest, url: str | None = None, *, token_file: str | Path | None = None) -> SearchResponse:
    """What ``geovec search --server URL`` calls: the same SearchRequest, answered by the server.

    ``index`` and ``raster`` are made absolute here: they name files relative to the caller's folder.
    """
    update = {"index": str(Path(req.index).expanduser().absolute())}
    if req.raster:
        update["raster"] = str(Path(req.raster).expanduser().absolute())
    if req.image:
        update["image"] = str(Path(req.image).expanduser().absolute())
    with Client(url, token_file=token_file) as c:
        return c.search(req.model_copy(update=update))
