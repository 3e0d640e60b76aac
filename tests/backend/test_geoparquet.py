"""GeoParquet export and import: round trip through the CLI, files from other tools, clear errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import CRS, Transformer

from geovec.backend.cli import main
from geovec.backend.demo import write_sample_folder
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.schemas import SearchRequest
from geovec.backend.service import run_search
from geovec.backend.types import TilingParams

PARAMS = TilingParams(tile_size=32)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpq")
    folder = write_sample_folder(root / "rasters", size=64)
    s = index_folder(folder, root / "idx", tiny_embedder, params=PARAMS)
    assert s.tiles == 12
    return {"root": root, "folder": folder, "idx": root / "idx"}


def _tiles(index: Path) -> dict[str, tuple]:
    store = IndexStore.open(index)
    try:
        with sqlite3.connect(index / "meta.sqlite") as con:
            ids = [r[0] for r in con.execute("SELECT tile_id FROM tiles")]
        return {t: (store.get(t), store.vector(t)) for t in ids}
    finally:
        store.close()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_writes_geoparquet_1_1_with_footprints_and_vectors(indexed, capsys) -> None:
    out = indexed["root"] / "tiles.parquet"
    code, text, err = _run(capsys, "export", "--index", str(indexed["idx"]), "--format", "geoparquet", str(out))
    assert code == 0, err
    assert "wrote 12 tile(s)" in text
    table = pq.read_table(out)
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    col = geo["columns"]["geometry"]
    assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"] and "crs" not in col  # OGC:CRS84
    assert col["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    ours = json.loads(table.schema.metadata[b"geovec"])
    assert ours["dim"] == table.schema.field("embedding").type.list_size
    assert len(ours["scenes"]) == 3 and ours["tiling"]["tile_size"] == 32
    stored = _tiles(indexed["idx"])
    assert table.num_rows == len(stored) == 12
    for row in table.to_pylist():
        rec, vec = stored[row["tile_id"]]
        geom = shapely.from_wkb(row["geometry"])
        assert geom.equals_exact(shapely.from_wkt(rec.footprint_wgs84), 1e-9)
        assert -180 <= geom.centroid.x <= 180 and abs(geom.centroid.y - rec.center_lat) < 1e-6  # lon, lat order
        assert row["bbox"]["xmin"] == pytest.approx(geom.bounds[0])
        np.testing.assert_array_equal(np.asarray(row["embedding"], np.float32), vec)
        assert tuple(row["window"]) == rec.window and tuple(row["sources"]) == rec.sources


def test_import_gives_back_an_index_that_searches_and_updates_like_the_original(indexed, capsys,
                                                                                tiny_embedder) -> None:
    out = indexed["root"] / "rt.parquet"
    assert _run(capsys, "export", "--index", str(indexed["idx"]), str(out))[0] == 0
    copy = indexed["root"] / "copy"
    code, text, err = _run(capsys, "index", "--from-parquet", str(out), "--index", str(copy))
    assert code == 0, err
    assert "imported 12 tile(s) (3 scene(s))" in text
    a, b = _tiles(indexed["idx"]), _tiles(copy)
    assert a.keys() == b.keys()
    for t in a:
        assert a[t][0] == b[t][0]
        np.testing.assert_array_equal(a[t][1], b[t][1])
    rec = next(iter(a.values()))[0]
    for req in (SearchRequest(index=str(indexed["idx"]), text="water", k=5),  # a point query needs the scenes
                SearchRequest(index=str(indexed["idx"]), point=[rec.center_lon, rec.center_lat], k=3)):
        want = run_search(req, tiny_embedder)
        got = run_search(req.model_copy(update={"index": str(copy)}), tiny_embedder)
        assert [f.properties["tile_id"] for f in got.features] == [f.properties["tile_id"] for f in want.features]
        assert got.features and got.query == want.query
    assert json.loads(_run(capsys, "index", "--from-parquet", str(out), "--index", str(copy), "--json")[1])["tiles"] == 0
    s = index_folder(indexed["folder"], copy, tiny_embedder, params=PARAMS)  # the scenes came along: nothing to do
    assert (s.tiles, s.scenes_skipped_unchanged) == (0, 3)


def _foreign(path: Path, dim: int, n: int = 20) -> np.ndarray:
    """A file as other tools write it: EPSG:3857 WKB polygons, list<float> vectors, an id column."""
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    polys = []
    for i in range(n):
        lon, lat = 10.0 + 0.01 * i, 45.0
        x0, y0 = to_merc.transform(lon, lat)
        polys.append(shapely.box(x0, y0, x0 + 500, y0 + 500))
    geo = {"version": "1.0.0", "primary_column": "geom",
           "columns": {"geom": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                "crs": CRS.from_epsg(3857).to_json_dict()}}}
    table = pa.table({"id": [f"chip-{i}" for i in range(n)], "geom": shapely.to_wkb(polys).tolist(),
                      "embedding": [v.tolist() for v in vecs]}).replace_schema_metadata({b"geo": json.dumps(geo)})
    pq.write_table(table, path)
    return vecs


def test_a_file_from_another_tool_imports_with_its_model(tmp_path: Path, capsys, tiny_model_dir: Path,
                                                         tiny_embedder) -> None:
    f = tmp_path / "chips.parquet"
    vecs = _foreign(f, tiny_embedder.dim)
    code, _, err = _run(capsys, "index", "--from-parquet", str(f), "--index", str(tmp_path / "i"))
    assert code == 1 and "--model" in err and "Traceback" not in err
    code, _, err = _run(capsys, "index", "--from-parquet", str(f), "--index", str(tmp_path / "i"),
                        "--model", str(tiny_model_dir))
    assert code == 0, err
    store = IndexStore.open(tmp_path / "i")
    try:
        rec = store.get("chip-3")
        np.testing.assert_array_equal(store.vector("chip-3"), vecs[3])
        assert rec.center_lon == pytest.approx(10.03 + 0.00225, abs=1e-3) and rec.center_lat == pytest.approx(45.0, abs=0.01)
        (hit, score), = store.search(vecs[7], 1)[0]
        assert hit.tile_id == "chip-7" and score == pytest.approx(1.0, abs=1e-5)
    finally:
        store.close()


def test_vectors_of_another_dimension_are_refused(tmp_path: Path, capsys, tiny_model_dir: Path,
                                                  tiny_embedder) -> None:
    f = tmp_path / "wrong.parquet"
    _foreign(f, tiny_embedder.dim + 3, n=4)
    code, _, err = _run(capsys, "index", "--from-parquet", str(f), "--index", str(tmp_path / "i"),
                        "--model", str(tiny_model_dir))
    assert code == 1 and f"{tiny_embedder.dim}-d" in err
    code, _, err = _run(capsys, "index", "--from-parquet", str(tmp_path / "absent.parquet"), "--index",
                        str(tmp_path / "j"))
    assert code == 1 and "does not exist" in err
    code, _, err = _run(capsys, "index", "--index", str(tmp_path / "j"))
    assert code == 2 and "FOLDER" in err
    code, _, err = _run(capsys, "index", str(tmp_path), "--from-parquet", str(f), "--index", str(tmp_path / "j"))
    assert code == 2 and "not both" in err
