"""The plugin's HTTP client held to the backend contract (schemas.py and backend/openapi.json).

QGIS's Python has no pydantic: the bodies the plugin builds are checked in the backend
environment (GEOVEC_BACKEND_PYTHON) against the same models the server validates with.
"""

from __future__ import annotations

import json
import subprocess

from conftest import ROOT

CHECK = r"""
import json, sys
from pathlib import Path
from geovec.backend import schemas
cases = json.load(sys.stdin)
for name, body in cases["bodies"]:
    getattr(schemas, name).model_validate(body)
spec_path = Path(cases["openapi"])
problems = []
if spec_path.exists():
    spec = json.loads(spec_path.read_text())
    for method, path in cases["routes"]:
        if method.lower() not in spec["paths"].get(path, {}):
            problems.append(f"{method} {path} not in openapi.json")
    comps = spec.get("components", {}).get("schemas", {})
    for name, body in cases["bodies"]:
        props = comps.get(name, {}).get("properties", {})
        if not props:
            problems.append(f"{name} not in openapi.json components")
        problems += [f"{name}.{k} not in openapi.json" for k in body if k not in props]
    for name, fields in cases["reads"].items():
        props = comps.get(name, {}).get("properties", {})
        problems += [f"{name}.{f} (read by the plugin) not in openapi.json" for f in fields if f not in props]
print(json.dumps({"problems": problems, "openapi": spec_path.exists()}))
"""

# Response fields the plugin reads, per schema.
READS = {
    "Health": ["version", "device", "gpu_name", "gpu_free_mb", "model"],
    "JobProgress": ["job_id", "index", "folder", "state", "tiles_done", "tiles_total", "tiles_per_s", "eta_s", "current_file",
                    "errors", "summary", "message"],
    "IndexSummary": ["tiles", "scenes", "scenes_skipped_unchanged"],
    "IndexInfo": ["count", "scenes", "preset", "checkpoint", "tiling", "extra"],
    "SearchResponse": ["features", "crs", "took_ms"],
    "FileError": ["path", "error"],
}


def test_request_bodies_and_routes_match_the_backend_contract(backend_python):
    from geovec.plugin.client import ROUTES
    from geovec.plugin.params import IndexParams, SearchParams

    bodies = [
        ("IndexRequest", IndexParams("/data", "/idx").to_request()),
        ("IndexRequest", IndexParams("/data", "/idx", model="tiny", tile_size=128, overlap=0.25,
                                     resolution=0.5).to_request()),
        ("SearchRequest", SearchParams("/idx", "text", text="water", min_score=0.1).to_request()),
        ("SearchRequest", SearchParams("/idx", "box", box=(1, 2, 3, 4), crs="EPSG:32617", raster="/a.tif",
                                       latlon=(29.6, -82.0), out_crs="EPSG:3857").to_request()),
        ("SearchRequest", SearchParams("/idx", "point", point=(1, 2), exclude_own=False, k=3).to_request()),
    ]
    cases = {"bodies": bodies, "routes": [list(r) for r in ROUTES.values()],
             "openapi": str(ROOT / "backend" / "openapi.json"), "reads": READS}
    res = subprocess.run([backend_python, "-c", CHECK], input=json.dumps(cases), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["problems"] == []


def test_bad_bodies_are_refused_by_the_same_models(backend_python):
    """The check above can fail: a body the backend would refuse is refused."""
    res = subprocess.run([backend_python, "-c", CHECK], capture_output=True, text=True, timeout=120,
                         input=json.dumps({"bodies": [["SearchRequest", {"index": "i", "point": [1, 2], "box": [1, 2, 3, 4]}]],
                                           "routes": [], "openapi": "/nonexistent", "reads": {}}))
    assert res.returncode != 0 and "give text, box, point or image" in res.stderr


def test_region_request_bodies_match_the_backend_contract(backend_python, region_search):
    """Level, rerank, spatial filters, compositional queries and region indexing, as the dock sends them."""
    from geovec.plugin.params import IndexParams, SearchParams

    bodies = [
        ("IndexRequest", IndexParams("/data", "/idx", bands=(3, 2, 1), regions="").to_request()),
        ("SearchRequest", SearchParams("/idx", "text", text="the tanks by the pier", level="region",
                                       rerank=20).to_request()),
        ("SearchRequest", SearchParams("/idx", "box", box=(1, 2, 3, 4), crs="EPSG:32617", text="next to water",
                                       within="POLYGON((0 0,10 0,10 10,0 10,0 0))", within_crs="EPSG:32617",
                                       within_mode="centre", scenes=("OSBS_029",)).to_request()),
        ("SearchRequest", SearchParams("/idx", "point", point=(1, 2), text="but greener").to_request()),
    ]
    cases = {"bodies": bodies, "routes": [], "openapi": str(ROOT / "backend" / "openapi.json"),
             "reads": {"IndexSummary": ["tiles", "scenes", "scenes_skipped_unchanged"],
                       "IndexInfo": ["extra"]}}  # extra.regions: whether region mode "auto" reranks
    res = subprocess.run([backend_python, "-c", CHECK], input=json.dumps(cases), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["problems"] == []
