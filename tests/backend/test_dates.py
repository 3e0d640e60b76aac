"""Acquisition dates: found in names and metadata, recorded in the index, old indexes still readable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.demo import pattern, write_geotiff
from geovec.backend.errors import InputError
from geovec.backend.raster import dates as rd


@pytest.mark.parametrize(("name", "acquired", "source"), [
    ("LC08_L1TP_044034_20160105_20170404_01_T1_B4", "2016-01-05", "product-id:landsat"),
    ("LE07_L2SP_016035_20000815_20200917_02_T1_SR_B3", "2000-08-15", "product-id:landsat"),
    ("LC80440342016032LGN00_B4", "2016-02-01", "product-id:landsat"),
    ("S2A_MSIL2A_20170210T103021_N0204_R108_T32TQM_20170210T103443", "2017-02-10T10:30:21", "product-id:sentinel-2"),
    ("T32TQM_20190101T101421_B02_10m", "2019-01-01T10:14:21", "name"),
    ("haiti_2016-01-05_rgb", "2016-01-05", "name"),
    ("site_20170210", "2017-02-10", "name"),
])
def test_date_from_name(name: str, acquired: str, source: str) -> None:
    got = rd.date_from_name(name)
    assert got is not None and (got.acquired, got.source) == (acquired, source)


@pytest.mark.parametrize("name", ["lsat7_2000_10", "rgbn", "tile_20161399", "L7_ETMs", "img_123456789"])
def test_no_date_in_name(name: str) -> None:
    assert rd.date_from_name(name) is None


def test_pattern_and_ranges() -> None:
    assert rd.date_from_pattern("lsat7_2000_10", "lsat7_%Y") == rd.SceneDate("2000-01-01", "name-pattern")
    assert rd.date_from_pattern("x_2016.032_y", "%Y.%j").acquired == "2016-02-01"  # type: ignore[union-attr]
    assert rd.date_from_pattern("nothing", "%Y%m%d") is None
    with pytest.raises(InputError, match="no year"):
        rd.pattern_regex("%m%d")
    with pytest.raises(InputError, match="%Q"):
        rd.pattern_regex("%Y%Q")
    a, b = rd.date_range("2016-01")
    assert (a.isoformat(), b.isoformat()) == ("2016-01-01T00:00:00", "2016-02-01T00:00:00")
    a, b = rd.date_range("2016-12-31/2017")
    assert (a.year, b.year) == (2016, 2018)
    with pytest.raises(InputError, match="not a date"):
        rd.date_range("last week")
    with pytest.raises(InputError, match="ends before"):
        rd.date_range("2017/2016")
    assert rd.parse_when("2016:01:05 10:00:00").hour == 10
    assert rd.parse_when("2016-01-05T10:00:00+02:00").hour == 8


def _rgb(seed: int = 1) -> np.ndarray:
    return (pattern("water", 64, 64, seed=seed) * 255).astype("uint8")


def test_metadata_tags_win_over_file_time_and_name(tmp_path: Path) -> None:
    import rasterio

    p = write_geotiff(tmp_path / "scene_20200101.tif", _rgb())
    with rasterio.open(p, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2021:03:04 05:06:07")
    # the file-writing time ranks below a date in the name
    assert rd.scene_date([str(p)], p.stem) == rd.SceneDate("2020-01-01", "name")
    with rasterio.open(p, "r+") as ds:
        ds.update_tags(ACQUISITIONDATETIME="2019-07-08T09:10:11Z")
    assert rd.scene_date([str(p)], p.stem) == rd.SceneDate("2019-07-08T09:10:11", "metadata:ACQUISITIONDATETIME")
    q = write_geotiff(tmp_path / "nodate.tif", _rgb())
    with rasterio.open(q, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2021:03:04 05:06:07")
    assert rd.scene_date([str(q)], q.stem) == rd.SceneDate("2021-03-04T05:06:07", "metadata:TIFFTAG_DATETIME")
    assert rd.scene_date([str(q)], q.stem, date="2015-06") == rd.SceneDate("2015-06-01", "user")


def test_index_records_dates_and_filters(tmp_path: Path, tiny_embedder) -> None:
    from geovec.backend.index import dates as idates
    from geovec.backend.index.store import IndexStore
    from geovec.backend.indexing import index_folder
    from geovec.backend.types import TilingParams

    folder = tmp_path / "imgs"
    write_geotiff(folder / "site_2016-01-05.tif", _rgb(1))
    write_geotiff(folder / "site_20170210.tif", _rgb(2))
    write_geotiff(folder / "undated.tif", _rgb(3))
    idx = tmp_path / "idx"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=32))
    with IndexStore.open(idx) as store:
        got = {store.scene(s)[0].name: d for s, d in idates.read(store).items()}  # type: ignore[index]
        assert got == {"site_2016-01-05": rd.SceneDate("2016-01-05", "name"),
                       "site_20170210": rd.SceneDate("2017-02-10", "name")}
        ids, undated = idates.scenes_between(store, "2016", "2016-12")
        assert len(ids) == 1 and undated == 1
        assert store.scene(ids[0])[0].name == "site_2016-01-05"  # type: ignore[index]
    # --date overrides every scene of the run, with its source
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=32), date="2018-05-06")
    with IndexStore.open(idx) as store:
        assert {d for d in idates.read(store).values()} == {rd.SceneDate("2018-05-06", "user")}
    with pytest.raises(InputError, match="not a date"):
        index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=32), date="yesterday")


def test_index_without_dates_table_stays_readable(tmp_path: Path, tiny_embedder) -> None:
    """An index written before dates existed (no scene_dates table) opens read-only and reads as undated."""
    from geovec.backend.index import dates as idates
    from geovec.backend.index.store import IndexStore
    from geovec.backend.indexing import index_folder
    from geovec.backend.types import TilingParams

    folder = tmp_path / "imgs"
    write_geotiff(folder / "site_2016-01-05.tif", _rgb(1))
    idx = tmp_path / "idx"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=32))
    con = sqlite3.connect(idx / "meta.sqlite")
    con.execute("DROP TABLE scene_dates")
    con.commit()
    con.close()
    with IndexStore.open(idx) as store:
        assert idates.read(store) == {}
        assert idates.scenes_between(store, "2016", None) == ([], 1)
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=32))  # an update dates it
    with IndexStore.open(idx) as store:
        assert [d.acquired for d in idates.read(store).values()] == ["2016-01-05"]
