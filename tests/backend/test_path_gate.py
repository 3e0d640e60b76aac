"""The path gate over real HTTP: every path-typed field of the OpenAPI document, on every route, is
refused outside the allowed folders (the same answer whether the file exists or not), and each way out
a security run found is closed: a write through a symlink, a VRT read by /v1/ask and /v1/locate, a
``within`` file whose name has "(", a region layer. Plus: /v1/health tells a stranger only status and
version."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams
from tests.backend.serverproc import ServerProc
from tests.backend.test_server_hardening import vrt_of
from tests.backend.wfdata import CELLS, CRS, TILE, label_layer, tile_box, write_two_class_scene

OPENAPI = Path(__file__).resolve().parents[2] / "backend" / "openapi.json"
PATH_KEY = "x-geovec-path"  # how the document marks a field that names a file or folder (schemas.PATH_KEY)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_embedder) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("gate")
    outside = Path(tempfile.mkdtemp(prefix="geovec-outside-"))
    (root / "rasters").mkdir()
    write_two_class_scene(root / "rasters")
    write_two_class_scene(outside)  # outside/two.tif: the same scene, outside the roots
    idx = root / "idx"
    index_folder(root / "rasters", idx, tiny_embedder, params=TilingParams(tile_size=TILE), batch_size=16)
    label_layer(root / "labels.geojson", CELLS)
    label_layer(outside / "secret.geojson", CELLS, crs="EPSG:4326")
    srv = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir]).start()
    with srv.client() as c:
        yield {"root": root, "outside": outside, "idx": str(idx), "srv": srv, "c": c}
    srv.stop()
    shutil.rmtree(outside, ignore_errors=True)


# --- the enumeration: every path-typed field of the document, on every route ----------------------------------

def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def path_fields(spec: dict, node: dict, at: tuple = (), seen: frozenset = frozenset()) -> list[tuple[tuple, str]]:
    """(location, kind) of every field marked as a path under ``node``; a location is a tuple of keys where
    ``[]`` stands for "an item of this list" and ``{}`` for "a value of this map"."""
    ref = node.get("$ref")
    if ref is not None:
        if ref in seen:  # a recursive schema
            return []
        seen = seen | {ref}
    node = _resolve(spec, node)
    if PATH_KEY in node:
        return [(at, node[PATH_KEY])]
    out: list[tuple[tuple, str]] = []
    for alt in node.get("anyOf", []) + node.get("oneOf", []):
        if alt.get("type") != "null":
            out += path_fields(spec, alt, at, seen)
    for name, sub in node.get("properties", {}).items():
        out += path_fields(spec, sub, (*at, name), seen)
    if isinstance(node.get("items"), dict):
        out += path_fields(spec, node["items"], (*at, "[]"), seen)
    if isinstance(node.get("additionalProperties"), dict):
        out += path_fields(spec, node["additionalProperties"], (*at, "{}"), seen)
    return out


def operations(spec: dict) -> list[tuple[str, str, str, tuple, str]]:
    """(method, route, where ('json' or 'params'), location, kind) of every path field of every operation."""
    out = []
    for route, ops in spec["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                if PATH_KEY in param.get("schema", {}):
                    out.append((method, route, "params", (param["name"],), param["schema"][PATH_KEY]))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is not None:
                out += [(method, route, "json", at, kind) for at, kind in path_fields(spec, body)]
    return out


def _base(world: dict, tiny_model_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """A valid request per operation (a new route with a path field must add its own here)."""
    idx, root = world["idx"], world["root"]
    search = {"index": idx, "text": "water"}
    return {
        ("post", "/v1/indexes"): {"path": str(root / "new-index")},
        ("post", "/v1/indexes/open"): {"path": idx},
        ("get", "/v1/indexes/info"): {"path": idx},
        ("delete", "/v1/indexes"): {"path": str(root / "no-index")},
        ("post", "/v1/jobs"): {"folder": str(root / "rasters"), "index": str(root / "job-index"),
                               "groups": {"g": [str(root / "rasters" / "two.tif")]}, "model": str(tiny_model_dir),
                               "regions": "grid=1"},
        ("post", "/v1/models/load"): {"model": str(tiny_model_dir)},
        ("post", "/v1/search"): {**search, "indexes": [idx], "within": "POLYGON((0 0,1 0,1 1,0 0))"},
        ("post", "/v1/search/vector"): {"index": idx, "vector": [0.1] * 64},
        ("post", "/v1/classify"): {"index": idx, "classes": ["water", "town"], "out_dir": str(root / "maps")},
        ("post", "/v1/fewshot"): {"index": idx, "labels": str(root / "labels.geojson"), "out_dir": str(root / "fs")},
        ("post", "/v1/refine"): {"index": idx, "query": dict(search, indexes=[idx]), "good": ["x"],
                                 "save_marks": str(root / "marks.geojson")},
        ("post", "/v1/locate"): {"index": idx, "query": {"index": idx, "box": tile_box(1, 1), "crs": CRS,
                                                         "indexes": [idx]}},
        ("post", "/v1/ask"): {"index": idx, "box": tile_box(1, 1), "crs": CRS, "raster": str(root / "rasters/two.tif"),
                              "question": "what is here?", "answers": ["water", "town"]},
        ("post", "/v1/change"): {"before": idx, "after": "2017", "index": idx, "out": str(root / "change")},
    }


def _outside_value(kind: str, path: Path) -> str:
    return f"grid=1;layer={path}" if kind == "spec" else str(path)


def _set(body: dict, at: tuple, value: str) -> dict:
    """``body`` with the field at ``at`` set to ``value`` (a list item: the first; a map value: the first)."""
    out = copy.deepcopy(body)
    node: Any = out
    for i, key in enumerate(at):
        last = i == len(at) - 1
        if key == "[]":
            assert isinstance(node, list) and node, f"the base request has no list at {at[:i]}"
            if last:
                node[0] = value
            node = node[0]
        elif key == "{}":
            assert isinstance(node, dict) and node, f"the base request has no map at {at[:i]}"
            k = next(iter(node))
            if last:
                node[k] = value
            node = node[k]
        elif last:
            node[key] = value
        else:
            assert key in node, f"the base request lacks {'.'.join(at[:i + 1])}: add it so {at} is exercised"
            node = node[key]
    return out


def test_every_path_field_of_the_openapi_document_is_gated_on_every_route(world, tiny_model_dir: Path) -> None:
    c, outside = world["c"], world["outside"]
    spec = json.loads(OPENAPI.read_text())
    ops = operations(spec)
    found = {(m, r, ".".join(at)) for m, r, _, at, _ in ops}
    # the walker must see the known fields (else it would pass by finding nothing)
    for known in [("post", "/v1/classify", "out_dir"), ("post", "/v1/refine", "save_marks"),
                  ("post", "/v1/refine", "query.raster"), ("post", "/v1/refine", "query.within"),
                  ("post", "/v1/locate", "query.indexes.[]"), ("post", "/v1/jobs", "groups.{}.[]"),
                  ("post", "/v1/jobs", "regions"), ("post", "/v1/fewshot", "labels"), ("post", "/v1/ask", "raster"),
                  ("get", "/v1/indexes/info", "path"), ("delete", "/v1/indexes", "path"),
                  ("post", "/v1/models/load", "model"), ("post", "/v1/search", "within")]:
        assert known in found, (known, sorted(found))
    assert len(ops) >= 30
    base = _base(world, tiny_model_dir)
    problems = []
    for method, route, where, at, kind in ops:
        assert (method, route) in base, f"{method.upper()} {route} has path fields {at}: add a base request"
        details = []
        for name in ("secret.geojson", "missing.geojson"):  # an existing and a missing file outside
            req = _set(base[(method, route)], at, _outside_value(kind, outside / name))
            r = c.request(method.upper(), route, **{where: req})
            if r.status_code != 403 or r.json().get("error") != "forbidden_path":
                problems.append(f"{method.upper()} {route} {'.'.join(at)}={name}: {r.status_code} {r.text[:200]}")
            details.append(r.text.replace(name, "NAME"))
        if details[0] != details[1]:
            problems.append(f"{method.upper()} {route} {'.'.join(at)}: tells whether a file outside exists: {details}")
    assert not problems, "\n".join(problems)
    assert not (world["root"] / "new-index").exists() and not (world["root"] / "job-index").exists()


# --- the four ways out the security run found ------------------------------------------------------------------

def test_classify_never_writes_through_a_symlink_in_the_output_folder(world) -> None:
    c, root, outside = world["c"], world["root"], world["outside"]
    out = root / "maps-link"
    out.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    (out / "tiles.geojson").symlink_to(victim)
    r = c.post("/v1/classify", json={"index": world["idx"], "classes": ["water", "town"], "out_dir": str(out)})
    assert r.status_code == 200, r.text
    assert victim.read_text() == "keep me"  # the file outside is untouched
    written = out / "tiles.geojson"
    assert not written.is_symlink() and len(json.loads(written.read_text())["features"]) == 32
    assert Path(r.json()["class_maps"][0]["path"]).parent == out
    assert not [p for p in out.iterdir() if ".tmp" in p.name]  # no temporary file left
    # a link to a folder outside in place of out_dir itself resolves outside: refused
    (root / "maps-out").symlink_to(outside, target_is_directory=True)
    r = c.post("/v1/classify", json={"index": world["idx"], "classes": ["water", "town"],
                                     "out_dir": str(root / "maps-out")})
    assert r.status_code == 403 and r.json()["error"] == "forbidden_path", r.text
    assert not list(outside.glob("classmap_*"))


def test_ask_and_locate_refuse_a_vrt_that_reads_outside(world) -> None:
    c, root, outside = world["c"], world["root"], world["outside"]
    vrt = vrt_of(outside / "two.tif", root / "peek.vrt")
    r = c.post("/v1/ask", json={"index": world["idx"], "box": tile_box(1, 1), "crs": CRS, "raster": str(vrt),
                                "question": "what is here?", "answers": ["water", "town"]})
    assert r.status_code == 403 and "outside the folders" in r.json()["detail"], r.text
    r = c.post("/v1/locate", json={"index": world["idx"], "k": 5, "query": {
        "index": world["idx"], "box": tile_box(1, 1), "crs": CRS, "raster": str(vrt)}})
    assert r.status_code == 403 and "outside the folders" in r.json()["detail"], r.text


def test_a_within_file_whose_name_has_a_parenthesis_is_gated(world) -> None:
    c, outside = world["c"], world["outside"]
    shutil.copy(outside / "secret.geojson", outside / "area (1).geojson")
    details = []
    for name in ("area (1).geojson", "gone (2).geojson"):
        r = c.post("/v1/search", json={"index": world["idx"], "text": "water", "within": str(outside / name)})
        assert r.status_code == 403 and r.json()["error"] == "forbidden_path", r.text
        details.append(r.json()["detail"].replace(name, "NAME"))
    assert details[0] == details[1]  # nothing told about what exists outside


def test_a_region_layer_outside_is_refused_and_never_stored(world) -> None:
    c, root, outside = world["c"], world["root"], world["outside"]
    new = root / "regions-index"
    r = c.post("/v1/jobs", json={"folder": str(root / "rasters"), "index": str(new),
                                 "tiling": {"tile_size": TILE}, "regions": f"grid=1,2;layer={outside / 'secret.geojson'}"})
    assert r.status_code == 403 and "region layer" in r.json()["detail"], r.text
    assert not new.exists()


def test_health_tells_a_stranger_only_status_and_version(world, tiny_model_dir: Path) -> None:
    srv = world["srv"]
    h = httpx.get(srv.url + "/v1/health").json()
    assert set(h) == {"status", "version"} and h["status"] == "ok"
    assert str(tiny_model_dir) not in json.dumps(h)
    wrong = httpx.get(srv.url + "/v1/health", headers={"Authorization": "Bearer nope"}).json()
    assert set(wrong) == {"status", "version"}
    full = world["c"].get("/v1/health").json()
    assert full["device"] == "cpu" and full["model"] == str(tiny_model_dir) and "model_loaded" in full
