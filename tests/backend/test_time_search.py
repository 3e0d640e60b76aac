"""Dates in search: hits carry their date, --date-from/--date-to filter, other dates, score maps,
``geovec info`` and GeoParquet export show dates; the same over real HTTP (``/v1/search``, ``/v1/change``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.demo import pattern, write_geotiff
from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams
from tests.backend.serverproc import ServerProc

W, H, TILE = 128, 64, 32


def _img(kind_right: str) -> np.ndarray:
    left = pattern("water", H, W // 2, seed=1)
    right = pattern(kind_right, H, W // 2, seed=2)
    return (np.concatenate([left, right], axis=2) * 255).astype("uint8")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_embedder):
    root = tmp_path_factory.mktemp("timesearch")
    write_geotiff(root / "imgs" / "town_2016-01-05.tif", _img("forest"))
    write_geotiff(root / "imgs" / "town_2017-02-10.tif", _img("urban"))
    write_geotiff(root / "imgs" / "town_2018-06-01.tif", _img("urban"))
    index_folder(root / "imgs", root / "idx", tiny_embedder, params=TilingParams(tile_size=TILE),
                 regions="grid=1,2;overlap=0")
    return root


def _search(world: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from geovec.backend.cli import main

    rc = main(["search", "--index", str(world / "idx"), "--local", "--dtype", "fp32", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_hits_dates_filter_other_dates_and_score_map(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import rasterio

    rc, out, err = _search(world, "--text", "buildings", "--k", "24", "--json", capsys=capsys)
    assert rc == 0, err
    feats = json.loads(out)["features"]
    assert len(feats) == 24 and {f["properties"]["acquired"] for f in feats} == {"2016-01-05", "2017-02-10",
                                                                                   "2018-06-01"}
    assert {f["properties"]["date_source"] for f in feats} == {"name"}
    rc, out, err = _search(world, "--text", "buildings", "--k", "24", "--date-from", "2017", "--date-to", "2017-02",
                           "--json", "--other-dates", "--score-map", str(world / "scores"), capsys=capsys)
    assert rc == 0, err
    resp = json.loads(out)
    feats = resp["features"]
    assert len(feats) == 8 and {f["properties"]["acquired"] for f in feats} == {"2017-02-10"}
    assert resp["query"]["filter"]["date_from"] == "2017" and resp["query"]["filter"]["dated_scenes"] == 1
    for f in feats:
        others = f["properties"]["other_dates"]
        assert [o["acquired"] for o in others] == ["2016-01-05", "2018-06-01"]  # oldest first
        assert all(o["overlap"] == 1.0 and -1 <= o["score"] <= 1 for o in others)
        assert others[1]["score"] == pytest.approx(f["properties"]["score"], abs=2e-3)  # 2018 = 2017's pixels
    (m,) = resp["query"]["score_maps"]  # only the filtered scene
    assert "2017-02-10" in m["scene"] and m["tiles"] == 8
    with rasterio.open(m["path"]) as ds:
        arr = ds.read(1)
        assert (ds.width, ds.height) == (W, H) and ds.crs.to_epsg() == 32617 and not np.isnan(arr).any()
        assert "similarity" in ds.tags(1)["LEGEND"]
    best = max(feats, key=lambda f: f["properties"]["score"])["properties"]
    c, r, w, h = best["window"]
    assert arr[r:r + h, c:c + w].max() >= best["score"] - 1e-4  # the hit's tile (or a region in it) is painted
    assert Path(m["style"]).read_text().count("<item ") == 5
    rc, out, err = _search(world, "--text", "x", "--date-from", "2019", capsys=capsys)
    assert rc == 1 and "no scene of index" in err and "2016-01-05 .. 2018-06-01" in err and len(err.splitlines()) == 1
    rc, out, err = _search(world, "--text", "x", "--date-from", "2018", "--date-to", "2016", capsys=capsys)
    assert rc == 1 and "is after --date-to" in err
    rc, out, err = _search(world, "--text", "x", "--date-to", "last year", capsys=capsys)
    assert rc == 1 and "not a date" in err


def test_classify_by_date(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Workflows take --date-from/--date-to too: only the scenes of those dates are classified."""
    from geovec.backend.cli import main

    rc = main(["classify", "--index", str(world / "idx"), "--classes", "water", "town", "--date-from", "2017",
               "--date-to", "2017", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    resp = json.loads(cap.out)
    assert resp["tiles"] == 8
    rc = main(["classify", "--index", str(world / "idx"), "--classes", "water", "town", "--date-from", "2030"])
    err = capsys.readouterr().err
    assert rc == 1 and "no scene of index" in err and len(err.strip().splitlines()) == 1


def test_info_and_geoparquet_show_dates(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from geovec.backend.cli import main

    assert main(["info", "--index", str(world / "idx")]) == 0
    out = capsys.readouterr().out
    assert "dates      2016-01-05 .. 2018-06-01 (3 dated, 0 undated)" in out
    assert "2017-02-10 (name)" in out
    assert main(["export", "--index", str(world / "idx"), str(world / "t.parquet")]) == 0
    t = pq.read_table(world / "t.parquet", columns=["acquired", "acquired_source"])
    assert sorted(set(t.column("acquired").to_pylist())) == ["2016-01-05", "2017-02-10", "2018-06-01"]
    assert set(t.column("acquired_source").to_pylist()) == {"name"}
    assert main(["index", "--from-parquet", str(world / "t.parquet"), "--index", str(world / "imported")]) == 0
    capsys.readouterr()
    assert main(["info", "--index", str(world / "imported")]) == 0
    assert "dates      2016-01-05 .. 2018-06-01 (3 dated, 0 undated)" in capsys.readouterr().out  # kept on import


def test_change_and_time_search_over_http(world: Path, tiny_model_dir: Path) -> None:
    srv = ServerProc(world / "srv", model=tiny_model_dir, roots=[world, tiny_model_dir]).start()
    try:
        with srv.client() as c:
            idx = str(world / "idx")
            r = c.post("/v1/change", json={"index": idx, "before": "2016", "after": "2017", "out": str(world / "ch"),
                                           "to": "buildings", "level": "region", "top": 3})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["level"] == "region" and body["pairs"] == 8 * 5 and len(body["top"]) == 3
            assert Path(body["maps"][0]["path"]).is_file() and Path(body["geojson"]).is_file()
            assert body["top"][0]["properties"]["toward"] >= body["top"][2]["properties"]["toward"]
            r = c.post("/v1/change", json={"index": idx, "before": "2017", "after": "2016", "out": str(world / "ch2")})
            assert r.status_code == 422 and "does not end before" in r.json()["detail"]
            assert not (world / "ch2").exists()
            r = c.post("/v1/change", json={"index": idx, "before": "2016", "after": "2017", "out": "/etc/geovec"})
            assert r.status_code == 403, r.text
            r = c.post("/v1/search", json={"index": idx, "text": "buildings", "k": 3, "date_from": "2018",
                                           "other_dates": True, "score_map": str(world / "sm")})
            assert r.status_code == 200, r.text
            body = r.json()
            assert {f["properties"]["acquired"] for f in body["features"]} == {"2018-06-01"}
            assert len(body["features"][0]["properties"]["other_dates"]) == 2
            assert Path(body["query"]["score_maps"][0]["path"]).is_file()
    finally:
        assert srv.stop() == 0
