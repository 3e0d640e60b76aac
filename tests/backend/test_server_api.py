"""``geovec serve`` as a user meets it: a real server subprocess on 127.0.0.1, tiny model, real HTTP.

One server for the whole module (started before any model is loaded, so the
first test sees it start without one); synthetic GeoTIFFs written by the tests.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import stat
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from geovec.backend.demo import write_geotiff, write_sample_folder
from tests.backend.serverproc import ServerProc, wait_job

OPENAPI = Path(__file__).resolve().parents[2] / "backend" / "openapi.json"
TILE = 32
LAKE_BOX = [400100.0, 3299700.0, 400300.0, 3299900.0]  # inside lake_utm17n (EPSG:32617, 640 m square)


def _routes() -> list[tuple[str, str]]:
    spec = json.loads(OPENAPI.read_text())
    return [(m.upper(), p.replace("{job_id}", "abc")) for p, ops in spec["paths"].items() for m in ops]


ROUTES = _routes()
PRIVATE = [r for r in ROUTES if r[1] != "/v1/health"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    root = tmp_path_factory.mktemp("server-api")
    folder = write_sample_folder(root / "rasters", size=64)
    bad = root / "bad"
    write_geotiff(bad / "no_crs.tif", np.full((3, 64, 64), 9, dtype="uint8"), crs=None)
    (bad / "not_a_raster.tif").write_text("hello")
    srv = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir]).start()
    with srv.client() as c:
        yield {"root": root, "folder": folder, "bad": bad, "srv": srv, "c": c, "model": tiny_model_dir}
    code = srv.stop()
    assert code == 0, srv.console[-2000:]
    assert not srv.token_file.exists(), "a clean shutdown removes the token file"
    assert "shut down cleanly" in srv.log_text


@pytest.fixture(scope="module")
def indexed(world):
    """The sample folder indexed through ``POST /v1/jobs``; returns (index path, final job)."""
    c, idx = world["c"], world["root"] / "idx"
    r = c.post("/v1/jobs", json={"folder": str(world["folder"]), "index": str(idx),
                                 "tiling": {"tile_size": TILE}, "batch_size": 4})
    assert r.status_code == 202, r.text
    seen: list[dict] = []
    job = wait_job(c, r.json()["job_id"], seen=seen, timeout=300)
    assert job["state"] == "done", job
    return str(idx), job, seen


def test_starts_fast_without_a_model(world) -> None:
    srv = world["srv"]
    h = httpx.get(srv.url + "/v1/health").json()  # no token needed: status and version only
    assert h["status"] == "ok" and h["version"] and "model" not in h
    h = world["c"].get("/v1/health").json()  # with the token: the model and device too
    assert h["status"] == "ok" and h["model_loaded"] is False and h["model"] == str(world["model"])
    assert h["device"] == "cpu" and h["version"]
    print(f"server answered /v1/health {srv.start_s:.2f} s after launch")
    assert srv.start_s < 20, "geovec serve should start in a second or two (20 s allows a loaded CI box)"
    assert srv.url.startswith("http://127.0.0.1:") and srv.url in srv.console  # the URL is printed
    assert srv.token not in srv.console and srv.token not in srv.log_text  # the token only in its 0600 file


def test_token_file_is_private_and_complete(world) -> None:
    srv = world["srv"]
    assert stat.S_IMODE(os.stat(srv.token_file).st_mode) == 0o600
    info = json.loads(srv.token_file.read_text())
    assert set(info) == {"url", "token", "pid"} and info["pid"] == srv.proc.pid and len(info["token"]) >= 32
    assert stat.S_IMODE(os.stat(srv.log_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(srv.log_dir / "server.log").st_mode) == 0o600


@pytest.mark.parametrize(("method", "path"), PRIVATE)
def test_every_private_route_refuses_missing_or_wrong_token(world, method: str, path: str) -> None:
    srv = world["srv"]
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": srv.token},
                    {"Authorization": f"Basic {srv.token}"}, {"Authorization": f"Bearer {srv.token}x"}):
        r = httpx.request(method, srv.url + path, headers=headers, json={} if method == "POST" else None)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_a_non_loopback_host(world, method: str, path: str) -> None:
    srv = world["srv"]
    port = srv.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", f"attacker.127.0.0.1.nip.io:{port}", "192.168.1.5"):
        r = httpx.request(method, srv.url + path, headers={"Host": host, "Authorization": f"Bearer {srv.token}"})
        assert r.status_code == 403, (host, r.text)
        assert r.json()["error"] == "forbidden_host" and host.split(":")[0] in r.json()["detail"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        r = httpx.get(srv.url + "/v1/health", headers={"Host": host})
        assert r.status_code == 200, host


def test_no_cors_headers_for_a_browser(world) -> None:
    c = world["c"]
    r = c.options("/v1/jobs", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers and r.status_code >= 400
    r = c.get("/v1/jobs", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_bodies_over_the_cap_are_413_by_length_and_by_stream(world) -> None:
    c = world["c"]
    big = {"inputs": [{"text": "x" * 1000}] * 1100}  # ~1.1 MB
    r = c.post("/v1/embed", json=big)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large" and "1048576" in r.json()["detail"]

    def chunks():  # no Content-Length: chunked transfer, counted as it streams
        for _ in range(40):
            yield b"x" * 65536

    r = c.post("/v1/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    assert c.get("/v1/jobs").status_code == 200  # the server is fine


def test_job_progress_rises_to_done(indexed, world) -> None:
    _, job, seen = indexed
    assert job["tiles_total"] == job["tiles_done"] > 0 and job["summary"]["tiles"] == 12  # 3 scenes x 2x2 tiles
    done = [s["tiles_done"] for s in seen if s["state"] == "running"] + [job["tiles_done"]]
    assert done == sorted(done), "progress never goes back"
    assert job["eta_s"] == 0.0 and job["errors"] == [] and "indexed 12" in job["message"]
    jobs = world["c"].get("/v1/jobs").json()
    assert job["job_id"] in [j["job_id"] for j in jobs]


def test_text_box_point_search_over_http_equals_in_process(indexed, world, tiny_embedder) -> None:
    from geovec.backend.schemas import SearchRequest
    from geovec.backend.service import run_search

    idx = indexed[0]
    lake = str(world["folder"] / "lake_utm17n.tif")
    bodies = [
        {"index": idx, "text": "water", "k": 5},
        {"index": idx, "box": LAKE_BOX, "crs": "EPSG:32617", "raster": lake, "k": 4, "out_crs": "EPSG:3857"},
        {"index": idx, "point": [400320.0, 3299680.0], "crs": "EPSG:32617", "k": 3, "latlon": [29.8, -82.0]},
    ]
    for body in bodies:
        r = world["c"].post("/v1/search", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["type"] == "FeatureCollection" and got["crs"] == body.get("out_crs", "EPSG:4326")
        want = run_search(SearchRequest(**body), tiny_embedder)
        assert [f["properties"]["tile_id"] for f in got["features"]] == [f.properties["tile_id"] for f in want.features]
        for a, b in zip(got["features"], want.features, strict=True):
            assert math.isclose(a["properties"]["score"], b.properties["score"], abs_tol=1e-4)
            assert {"rank", "score", "source", "window"} <= set(a["properties"])
    h = world["c"].get("/v1/health").json()  # with the token: the model too
    assert h["model_loaded"] is True and h["model"] == str(world["model"])


BAD = [  # (name, method, path, body-or-params, status, words in detail)
    ("unknown index", "POST", "/v1/search", {"index": "{root}/nope", "text": "water"}, 404, ["nope"]),
    ("empty text", "POST", "/v1/search", {"index": "{idx}", "text": "  "}, 422, ["text is empty"]),
    ("two anchors", "POST", "/v1/search", {"index": "{idx}", "box": LAKE_BOX, "point": [1, 2]}, 422,
     ["text may go with one"]),
    ("NaN lat/lon", "POST", "/v1/search", '{"index": "{idx}", "text": "a", "latlon": [NaN, 1.0]}', 422, ["finite"]),
    ("lat out of range", "POST", "/v1/search", {"index": "{idx}", "text": "a", "latlon": [91, 0]}, 422, ["latlon"]),
    ("box outside", "POST", "/v1/search", {"index": "{idx}", "box": [0, 0, 10, 10], "crs": "EPSG:32617",
                                           "raster": "{lake}"}, 422, []),
    ("bad crs", "POST", "/v1/search", {"index": "{idx}", "box": LAKE_BOX, "crs": "EPSG:99999999"}, 422, ["99999999"]),
    ("bad raster path", "POST", "/v1/search", {"index": "{idx}", "box": LAKE_BOX, "crs": "EPSG:32617",
                                               "raster": "{root}/missing.tif"}, None, ["missing.tif"]),
    ("raster without CRS", "POST", "/v1/search", {"index": "{idx}", "box": [1, 1, 5, 5], "crs": "EPSG:32617",
                                                  "raster": "{bad}/no_crs.tif"}, 422, ["no_crs.tif"]),
    ("path outside roots", "POST", "/v1/search", {"index": "/etc", "text": "a"}, 403, ["outside"]),
    ("NUL in path", "POST", "/v1/search", {"index": "a\u0000b", "text": "a"}, 422, ["path"]),
    ("not JSON", "POST", "/v1/search", "{nope", 422, ["JSON"]),
    ("unknown field", "POST", "/v1/search", {"index": "{idx}", "text": "a", "foo": 1}, 422, ["foo"]),
    ("job: missing folder", "POST", "/v1/jobs", {"folder": "{root}/none", "index": "{root}/i2"}, 404, ["none"]),
    ("job: index inside folder", "POST", "/v1/jobs", {"folder": "{root}", "index": "{root}"}, 422, ["index"]),
    ("job: bad tile size", "POST", "/v1/jobs", {"folder": "{root}", "index": "{root}/i3",
                                                "tiling": {"tile_size": 3}}, 422, ["tile_size"]),
    ("unknown job", "GET", "/v1/jobs/deadbeef", None, 404, ["deadbeef"]),
    ("unknown route", "GET", "/v1/nothing", None, 404, []),
    ("info: no index", "GET", "/v1/indexes/info", {"path": "{root}/nope"}, 404, ["nope"]),
    ("open: no index", "POST", "/v1/indexes/open", {"path": "{bad}"}, 404, []),
    ("model: unknown", "POST", "/v1/models/load", {"model": "no such model!"}, 404, ["no such model"]),
    ("embed: bad base64", "POST", "/v1/embed", {"inputs": [{"image_b64": "%%%"}]}, 422, ["base64"]),
    ("embed: not an image", "POST", "/v1/embed", {"inputs": [{"image_b64": "aGVsbG8="}]}, 422, ["image"]),
    ("embed: NaN bbox", "POST", "/v1/embed", '{"inputs": [{"text": "a", "bbox": [0, 0, NaN, 1]}]}', 422, ["finite"]),
    ("embed: nothing", "POST", "/v1/embed", {"inputs": [{"instruction": "x"}]}, 422, ["neither"]),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "status", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_with_a_useful_message(world, indexed, name, method, path, body, status, words) -> None:
    subst = {"{root}": str(world["root"]), "{idx}": indexed[0], "{bad}": str(world["bad"]),
             "{lake}": str(world["folder"] / "lake_utm17n.tif")}

    def fill(v):
        if isinstance(v, str):
            for k, s in subst.items():
                v = v.replace(k, s)
            return v
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        return v

    c = world["c"]
    if method == "GET":
        r = c.get(path, params=fill(body) if body else None)
    elif isinstance(body, str):
        r = c.post(path, content=fill(body), headers={"Content-Type": "application/json"})
    else:
        r = c.post(path, json=fill(body))
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    err = r.json()
    assert set(err) == {"error", "detail", "hint"} and err["error"] and err["detail"]
    for w in words:
        assert w.lower() in err["detail"].lower(), err


def test_a_job_reports_per_file_errors(world) -> None:
    c = world["c"]
    r = c.post("/v1/jobs", json={"folder": str(world["bad"]), "index": str(world["root"] / "bad-idx"),
                                 "model": str(world["model"]), "tiling": {"tile_size": TILE}})
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json()["job_id"], timeout=120)
    assert job["state"] == "done", job
    paths = {Path(e["path"]).name for e in job["errors"]}
    assert {"no_crs.tif", "not_a_raster.tif"} <= paths, job["errors"]


def test_one_writer_per_index(world, indexed) -> None:
    c = world["c"]
    body = {"folder": str(world["folder"]), "index": str(world["root"] / "busy-idx"), "tiling": {"tile_size": 16},
            "batch_size": 1}
    first = c.post("/v1/jobs", json=body)
    assert first.status_code == 202, first.text
    second = c.post("/v1/jobs", json=body)
    jid = first.json()["job_id"]
    c.post(f"/v1/jobs/{jid}/cancel")
    final = wait_job(c, jid, timeout=120)
    assert second.status_code == 409 and second.json()["error"] == "busy" and jid in second.json()["detail"]
    assert final["state"] in ("cancelled", "done")


def test_index_create_open_list_info_delete(world, indexed) -> None:
    c, root = world["c"], world["root"]
    new = root / "created-idx"
    r = c.post("/v1/indexes", json={"path": str(new), "tiling": {"tile_size": 48}})
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["count"] == 0 and info["tiling"]["tile_size"] == 48 and info["dim"] > 0
    assert c.post("/v1/indexes", json={"path": str(new)}).status_code == 409  # exists already
    r = c.post("/v1/indexes/open", json={"path": indexed[0]})
    assert r.status_code == 200 and r.json()["count"] == 12
    listed = {i["path"] for i in c.get("/v1/indexes").json()}
    assert {str(new), indexed[0]} <= listed
    assert c.get("/v1/indexes/info", params={"path": indexed[0]}).json()["scenes"] == 3
    r = c.delete("/v1/indexes", params={"path": str(new)})
    assert r.status_code == 200 and not new.exists()
    assert c.get("/v1/indexes/info", params={"path": str(new)}).status_code == 404


def test_embed_text_and_image_inputs(world) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, "PNG")
    img = base64.b64encode(buf.getvalue()).decode()
    r = world["c"].post("/v1/embed", json={"inputs": [
        {"instruction": "text_query", "text": "water"},
        {"instruction": "tile", "image_b64": img},
        {"instruction": "region_query", "image_b64": img, "bbox": [2, 2, 20, 30], "latlon": [10, 20]}]})
    assert r.status_code == 200, r.text
    out = r.json()
    v = np.array(out["vectors"])
    assert v.shape == (3, out["dim"]) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-3)


def test_models_list_load_unload(world) -> None:
    c = world["c"]
    models = c.get("/v1/models").json()
    assert "tiny" in {m["name"] for m in models} and any(m["loaded"] for m in models)
    h = c.post("/v1/models/unload").json()
    assert h["model_loaded"] is False
    h = c.post("/v1/models/load", json={"model": str(world["model"]), "device": "cpu"}).json()
    assert h["model_loaded"] is True and h["device"] == "cpu"


def test_no_request_caused_a_server_error(world) -> None:
    """Runs last: the catch-all handler logs 'failed unexpectedly' for any 500; there must be none."""
    time.sleep(0.2)
    assert "failed unexpectedly" not in world["srv"].log_text
