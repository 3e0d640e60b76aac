"""Crafted GeoParquet imports: each malformed input is one clear line (never "unexpected ... report it"),
duplicate tile ids are reported (how many, the first few) instead of dropped quietly, and nothing
already in the index is lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import CRS

from geovec.backend.cli import main
from geovec.backend.index.store import IndexStore

N = 12


def write_file(path: Path, dim: int, *, geo: Any = "default", ids: list[Any] | None = None,
               geoms: list[Any] | None = None, geovec: Any = None, extra: dict[str, Any] | None = None) -> Path:
    """A foreign GeoParquet file (WGS84 WKB boxes, list<float> vectors, an id column), parts replaced as given."""
    rng = np.random.default_rng(1)
    wkb = geoms if geoms is not None else shapely.to_wkb(
        [shapely.box(10 + 0.01 * i, 45, 10.005 + 0.01 * i, 45.005) for i in range(N)]).tolist()
    columns: dict[str, Any] = {"id": ids if ids is not None else [f"ok-{i}" for i in range(N)], "geometry": wkb,
                               "embedding": rng.normal(size=(N, dim)).astype(np.float32).tolist(), **(extra or {})}
    if geo == "default":
        geo = {"version": "1.0.0", "primary_column": "geometry",
               "columns": {"geometry": {"encoding": "WKB", "crs": CRS.from_epsg(4326).to_json_dict()}}}
    meta = {b"geo": geo if isinstance(geo, bytes) else json.dumps(geo).encode()}
    if geovec is not None:
        meta[b"geovec"] = json.dumps(geovec).encode()
    pq.write_table(pa.table(columns).replace_schema_metadata(meta), path)
    return path


def _geo_with_crs(crs: Any) -> dict[str, Any]:
    return {"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB", "crs": crs}}}


#: name -> (how the file is crafted, words the one-line error must contain)
CASES: dict[str, tuple[Callable[[Path, int], Path], str]] = {
    "invalid WKB": (lambda p, d: write_file(p, d, geoms=[b"\x01\x03junk"] * N), "not valid WKB"),
    "null geometry": (lambda p, d: write_file(p, d, geoms=[None] + shapely.to_wkb(
        [shapely.box(0, 0, 1, 1)] * (N - 1)).tolist()), "no geometry"),
    "geometry not binary": (lambda p, d: write_file(p, d, geoms=list(range(N))), "not valid WKB"),
    "incomplete PROJJSON": (lambda p, d: write_file(p, d, geo=_geo_with_crs({"type": "GeographicCRS", "name": "x"})),
                            "CRS"),
    "not a crs": (lambda p, d: write_file(p, d, geo=_geo_with_crs("not a crs")), "CRS"),
    "non-Earth CRS": (lambda p, d: write_file(p, d, geo=_geo_with_crs(CRS.from_user_input(
        "IAU_2015:49900").to_json_dict())), "Earth"),
    "geo not an object": (lambda p, d: write_file(p, d, geo=[1, 2]), "geo metadata"),
    "geo columns not an object": (lambda p, d: write_file(p, d, geo={"primary_column": "geometry", "columns": 3}),
                                  "geo metadata"),
    "primary column not text": (lambda p, d: write_file(p, d, geo={"primary_column": 7}), "geo metadata"),
    "geovec metadata incomplete": (lambda p, d: write_file(p, d, geovec={"dim": d}), "geovec metadata"),
    "coordinates off the globe": (lambda p, d: write_file(p, d, geoms=shapely.to_wkb(
        [shapely.box(500, 45, 501, 46)] * N).tolist()), "outside"),
}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_embedder) -> Path:
    root = tmp_path_factory.mktemp("gpq-bad")
    good = write_file(root / "good.parquet", tiny_embedder.dim)
    assert main(["index", "--from-parquet", str(good), "--index", str(root / "idx"), "--model",
                 str(tiny_model_dir)]) == 0
    return root / "idx"


def _count(index: Path) -> int:
    store = IndexStore.open(index)
    try:
        return int(store.count)
    finally:
        store.close()


def _import(capsys: pytest.CaptureFixture[str], f: Path, index: Path, model: Path) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["index", "--from-parquet", str(f), "--index", str(index), "--model", str(model)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_file_is_one_clear_line_and_the_index_keeps_its_tiles(case: str, index: Path, tmp_path: Path,
                                                                         tiny_model_dir: Path, tiny_embedder,
                                                                         capsys) -> None:
    craft, words = CASES[case]
    f = craft(tmp_path / "bad.parquet", tiny_embedder.dim)
    code, err = _import(capsys, f, index, tiny_model_dir)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "unexpected" not in err and "report it" not in err and "Traceback" not in err, err
    assert "bad.parquet" in err and words in err, err
    assert _count(index) == N  # nothing already indexed is lost, nothing half-imported


def test_duplicate_tile_ids_are_reported_not_dropped(index: Path, tmp_path: Path, tiny_model_dir: Path,
                                                     tiny_embedder, capsys) -> None:
    ids = ["dup-a", "dup-a", "dup-a", "dup-b", "dup-b"] + [f"new-{i}" for i in range(N - 5)]
    f = write_file(tmp_path / "dups.parquet", tiny_embedder.dim, ids=ids)
    code, err = _import(capsys, f, index, tiny_model_dir)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "2 tile ids" in err and "'dup-a' (3 rows)" in err and "'dup-b' (2 rows)" in err, err
    assert _count(index) == N
