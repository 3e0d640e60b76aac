"""The server against hostile or odd requests: huge text, paths the OS refuses, relative paths,
paths leaving the allowed folders (symlinks, VRT sources), file names that are not UTF-8."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from geovec.backend.demo import write_scene
from tests.backend.serverproc import ServerProc, wait_job

TILE = 32


def vrt_of(tif: Path, vrt: Path) -> Path:
    """A one-band VRT that reads band 1 of ``tif`` by its absolute path."""
    import rasterio

    with rasterio.open(tif) as src:
        gt = ", ".join(str(v) for v in src.transform.to_gdal())
        wkt, w, h, dtype = src.crs.to_wkt(), src.width, src.height, src.dtypes[0]
    dt = {"uint8": "Byte", "uint16": "UInt16"}[dtype]
    vrt.write_text(f"""<VRTDataset rasterXSize="{w}" rasterYSize="{h}">
  <SRS>{wkt.replace('"', '&quot;')}</SRS>
  <GeoTransform>{gt}</GeoTransform>
  <VRTRasterBand dataType="{dt}" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="0">{tif}</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
""")
    return vrt


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("hardening")
    outside = Path(tempfile.mkdtemp(prefix="geovec-outside-"))
    secret = write_scene(outside / "secret.tif", "forest", size=64, seed=5)
    folder = root / "rasters"
    write_scene(folder / "water.tif", "water", size=64, seed=1)
    srv = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir]).start()
    with srv.client() as c:
        yield {"root": root, "outside": outside, "secret": secret, "folder": folder, "srv": srv, "c": c}
    srv.stop()
    shutil.rmtree(outside, ignore_errors=True)


def test_huge_query_text_is_refused_at_once(world) -> None:
    c = world["c"]
    t0 = time.monotonic()
    r = c.post("/v1/search", json={"index": str(world["root"] / "none"), "text": "tanks " * 150_000}, timeout=30)
    assert r.status_code == 422, r.text
    assert "2000" in r.json()["detail"] and time.monotonic() - t0 < 10
    r = c.post("/v1/embed", json={"inputs": [{"text": "x" * 2001}]}, timeout=30)
    assert r.status_code == 422 and "2000" in r.json()["detail"]


LONG_NAME = "n" * 300  # over the 255-byte limit of a name
DEEP = "/".join(["é" * 120] * 20)  # under 4096 characters, over PATH_MAX (4096 bytes) in total


@pytest.mark.parametrize("tail", [LONG_NAME, DEEP], ids=["long-name", "long-path"])
def test_paths_the_os_cannot_have_are_404_on_every_route(world, tail: str) -> None:
    c, root = world["c"], world["root"]
    p = f"{root}/{tail}"
    calls = [
        ("POST", "/v1/indexes", {"json": {"path": p}}),
        ("POST", "/v1/indexes/open", {"json": {"path": p}}),
        ("GET", "/v1/indexes/info", {"params": {"path": p}}),
        ("DELETE", "/v1/indexes", {"params": {"path": p}}),
        ("POST", "/v1/search", {"json": {"index": p, "text": "water"}}),
        ("POST", "/v1/jobs", {"json": {"folder": p, "index": str(root / "i")}}),
        ("POST", "/v1/jobs", {"json": {"folder": str(world["folder"]), "index": p}}),
        ("POST", "/v1/search", {"json": {"index": str(root / "i"), "box": [0, 0, 1, 1], "raster": p}}),
    ]
    for method, route, kw in calls:
        r = c.request(method, route, **kw)
        assert r.status_code == 404, (route, r.status_code, r.text[:300])
        assert r.json()["error"] == "not_found" and "cannot exist" in r.json()["detail"]


def test_relative_paths_are_refused(world) -> None:
    c = world["c"]
    for method, route, kw in [("POST", "/v1/indexes", {"json": {"path": "rel-index"}}),
                              ("GET", "/v1/indexes/info", {"params": {"path": "./x"}}),
                              ("POST", "/v1/jobs", {"json": {"folder": "rasters", "index": "idx"}})]:
        r = c.request(method, route, **kw)
        assert r.status_code == 422 and "relative path" in r.json()["detail"], (route, r.text)
    assert not (world["srv"].home / "rel-index").exists()


def test_outside_the_roots_reveals_nothing_about_existence(world) -> None:
    c, outside = world["c"], world["outside"]
    answers = []
    for name in ("secret.tif", "missing.tif"):
        r = c.get("/v1/indexes/info", params={"path": str(outside / name)})
        assert r.status_code == 403 and r.json()["error"] == "forbidden_path"
        answers.append(r.json()["detail"].replace(name, "NAME"))
    assert answers[0] == answers[1]
    link = world["root"] / "link-out"
    link.symlink_to(outside, target_is_directory=True)
    r = c.post("/v1/jobs", json={"folder": str(link), "index": str(world["root"] / "i-link")})
    assert r.status_code == 403 and "outside the folders" in r.json()["detail"]


def test_a_vrt_reading_outside_the_roots_is_not_indexed(world) -> None:
    c, root = world["c"], world["root"]
    folder = root / "with-vrt"
    write_scene(folder / "lake.tif", "water", size=64, seed=2)
    vrt_of(world["secret"], folder / "peek.vrt")
    r = c.post("/v1/jobs", json={"folder": str(folder), "index": str(root / "i-vrt"), "tiling": {"tile_size": TILE}})
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json()["job_id"], timeout=300)
    assert job["summary"]["scenes"] == 1, job  # lake.tif only
    errors = {Path(e["path"]).name: e["error"] for e in job["errors"]}
    assert "outside the folders" in errors["peek.vrt"]
    r = c.post("/v1/search", json={"index": str(root / "i-vrt"), "point": [400100.0, 3299900.0],
                                   "crs": "EPSG:32617", "raster": str(folder / "peek.vrt")})
    assert r.status_code == 403 and "outside the folders" in r.json()["detail"], r.text


def test_a_file_name_that_is_not_utf8_never_breaks_the_jobs_list(world) -> None:
    c, root, srv = world["c"], world["root"], world["srv"]
    folder = root / "latin1"
    write_scene(folder / "ok.tif", "water", size=64, seed=3)
    shutil.copy(folder / "ok.tif", os.fsencode(folder) + b"/caf\xe9.tif")
    r = c.post("/v1/jobs", json={"folder": str(folder), "index": str(root / "i-latin1"), "tiling": {"tile_size": TILE}})
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json()["job_id"], timeout=300)
    assert job["state"] == "done" and any(e["path"].endswith("caf\\xe9.tif") for e in job["errors"]), job
    assert c.get("/v1/jobs").status_code == 200
    srv.stop()
    srv.start()
    with srv.client() as c2:
        r = c2.get("/v1/jobs")
        assert r.status_code == 200, r.text
        assert any(e["path"].endswith("caf\\xe9.tif") for j in r.json() for e in j["errors"])
    world["c"] = srv.client()


def test_health_and_reads_stay_responsive_while_the_model_is_busy(world) -> None:
    srv = world["srv"]
    c = srv.client()
    done: list[int] = []
    inputs = [{"instruction": "text_query", "text": "storage tanks by the harbour " * 60} for _ in range(48)]

    def long_embed() -> None:
        with srv.client() as c3:
            done.append(c3.post("/v1/embed", json={"inputs": inputs}, timeout=300).status_code)

    t = threading.Thread(target=long_embed)
    t.start()
    time.sleep(1.0)
    worst = 0.0
    try:
        while t.is_alive() and worst < 5:
            for route in ("/v1/health", "/v1/indexes", "/v1/jobs"):
                t0 = time.monotonic()
                assert c.get(route, timeout=30).status_code == 200
                worst = max(worst, time.monotonic() - t0)
            time.sleep(0.1)
    finally:
        t.join(300)
        c.close()
    assert done == [200]
    assert worst < 5, f"a read took {worst:.1f} s while the model was busy"
    assert "failed unexpectedly" not in srv.log_text
    assert httpx.get(srv.url + "/v1/health").status_code == 200
