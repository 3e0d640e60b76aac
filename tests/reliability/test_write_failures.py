"""Outputs that cannot be written, over real HTTP on one keep-alive connection: a folder in the way, a
file in the way of a folder, a read-only file, a full disk (RLIMIT_FSIZE on the server process: a write
past it fails as on a full disk), an output folder that vanishes while requests write into it. Each is
a clear ErrorBody (never a 500), nothing half-written is left, and the next request on the same
connection is answered."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams
from tests.backend.serverproc import ServerProc
from tests.backend.wfdata import TILE, write_two_class_scene

#: The server may write no file larger than this (marks of 1,600 tiles are larger).
MAX_FILE = 256 * 1024


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_embedder) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("write-failures")
    (root / "rasters").mkdir()
    write_two_class_scene(root / "rasters")
    idx = root / "idx"
    index_folder(root / "rasters", idx, tiny_embedder, params=TilingParams(tile_size=TILE), batch_size=16)
    srv = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir], max_file_bytes=MAX_FILE).start()
    with srv.client() as c:
        hits = c.post("/v1/search", json={"index": str(idx), "text": "water", "k": 32})
        assert hits.status_code == 200, hits.text
        ids = [f["properties"]["tile_id"] for f in hits.json()["features"]]
        yield {"root": root, "idx": str(idx), "c": c, "ids": ids, "srv": srv}
    srv.stop()


def _local(r: httpx.Response) -> object:
    """The client end (host, port) of the connection that carried ``r``."""
    return r.extensions["network_stream"].get_extra_info("client_addr")


def _refused(world: dict, r: httpx.Response, status: int, error: str, words: str) -> None:
    """``r`` is the ErrorBody stated, and the next request rides the same connection."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail", "hint"} and body["error"] == error and words in body["detail"], body
    assert body["hint"] and "\n" not in body["detail"]
    again = world["c"].get("/v1/indexes/info", params={"path": world["idx"]})
    assert again.status_code == 200 and _local(again) == _local(r), "the connection was dropped"


def _marks(world: dict, path: Path, n: int = 4) -> httpx.Response:
    ids = (world["ids"] * (1 + n // len(world["ids"])))[:n]
    return world["c"].post("/v1/refine", json={"index": world["idx"], "vector": [0.1] * 64, "good": ids,
                                               "label": "water", "save_marks": str(path)})


def _classify(world: dict, out_dir: Path) -> httpx.Response:
    return world["c"].post("/v1/classify", json={"index": world["idx"], "classes": ["water", "town"],
                                                 "out_dir": str(out_dir), "return_features": False})


def test_a_folder_in_the_way_of_a_file(world, matrix) -> None:
    (world["root"] / "marks-dir").mkdir()
    _refused(world, _marks(world, world["root"] / "marks-dir"), 409, "cannot_write", "a folder of that name")
    out = world["root"] / "maps-with-dir"
    (out / "tiles.geojson").mkdir(parents=True)
    _refused(world, _classify(world, out), 409, "cannot_write", "a folder of that name")
    matrix.add("writes", "folder in the way")


def test_a_file_in_the_way_of_a_folder(world, matrix) -> None:
    (world["root"] / "not-a-folder").write_text("x")
    _refused(world, _classify(world, world["root"] / "not-a-folder"), 409, "cannot_write", "a file of that name")
    _refused(world, _marks(world, world["root"] / "not-a-folder" / "marks.geojson"), 409, "cannot_write", "")
    matrix.add("writes", "file in the way")


def test_a_read_only_file_is_not_overwritten(world, matrix) -> None:
    target = world["root"] / "ro-marks.geojson"
    target.write_text("precious")
    target.chmod(0o444)
    _refused(world, _marks(world, target), 409, "cannot_write", "read-only")
    assert target.read_text() == "precious"
    matrix.add("writes", "read-only file")


def test_a_full_disk(world, matrix) -> None:
    target = world["root"] / "full" / "marks.geojson"
    ok = _marks(world, target, 4)  # small: fits
    assert ok.status_code == 200 and json.loads(target.read_text())["features"], ok.text
    before = target.read_bytes()
    _refused(world, _marks(world, target, 1600), 507, "no_space", "marks layer")
    assert target.read_bytes() == before  # the old file stays whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["marks.geojson"]  # no temporary file left
    matrix.add("writes", "disk full")


def test_an_output_folder_that_vanishes_mid_request(world, matrix) -> None:
    out = world["root"] / "vanishing"
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            shutil.rmtree(out, ignore_errors=True)
            try:
                out.mkdir()
            except OSError:
                pass

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    statuses = []
    try:
        first = None
        for _ in range(12):
            r = _classify(world, out)
            first = first or _local(r)
            statuses.append(r.status_code)
            assert r.status_code in (200, 409), r.text
            if r.status_code == 409:
                assert r.json()["error"] == "cannot_write", r.text
            assert _local(r) == first
    finally:
        stop.set()
        thread.join(10)
    matrix.add("writes", f"folder vanishing ({statuses.count(409)}/12 refused)")


def test_an_unexpected_error_is_an_error_body_and_keeps_the_connection(tmp_path: Path, matrix) -> None:
    """A bug in a route (here one added to raise) is a 500 ErrorBody; the next request on the connection works."""
    import time

    import uvicorn

    from geovec.backend.server.app import create_app
    from geovec.backend.server.settings import Settings

    settings = Settings(token_file=tmp_path / "server.json", data_dir=tmp_path / "data", log_dir=tmp_path / "log",
                        token="t" * 32, allowed_roots=[tmp_path])
    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/boom", boom)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer " + "t" * 32}) as c:
            r = c.get("/v1/boom")
            assert r.status_code == 500 and r.json()["error"] == "internal_error" and "a bug" in r.json()["detail"]
            again = c.get("/v1/jobs")
            assert again.status_code == 200 and _local(again) == _local(r), "the connection was dropped"
    finally:
        server.should_exit = True
        thread.join(10)
    matrix.add("writes", "unexpected error keeps the connection")
