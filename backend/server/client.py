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
    """Blocking JSON calls to ``/v1``; ``url=None`` uses the URL in the token file."""

    def __init__(self, url: str | None = None, token: str | None = None, *, token_file: str | Path | None = None,
                 timeout: float = 300.0) -> None:
        import httpx

        if token is None or url is None:
            data = read_token_file(token_file)
            token = token if token is not None else str(data["token"])
            url = url or str(data.get("url", ""))
        base = url.rstrip("/")
        base = base[: -len("/v1")] if base.endswith("/v1") else base
        self.http = httpx.Client(base_url=base, timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            r = self.http.request(method, "/v1" + path, json=body, params=params)
        except httpx.HTTPError as e:
            raise ModelUnavailableError(f"GeoVec backend at {self.http.base_url} not reachable: {e}",
                                        "start it with `geovec serve`, or check --server") from e
        if r.status_code >= 400:
            try:
                err = r.json()
            except ValueError:
                err = {"error": "http_error", "detail": r.text[:300]}
            cls = _BY_CODE.get(err.get("error", ""), InputError if r.status_code < 500 else GeoVecError)
            if r.status_code in (401, 403):
                cls = GeoVecError
            raise cls(f"server: {err.get('detail', r.reason_phrase)} (HTTP {r.status_code})", err.get("hint", ""))
        return r.json()

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
    import httpx

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
        r = httpx.get(url.rstrip("/") + "/v1/health", timeout=timeout,
                      headers={"Authorization": f"Bearer {data['token']}"})
    except httpx.HTTPError:
        return None
    return url if r.status_code == 200 else None


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
