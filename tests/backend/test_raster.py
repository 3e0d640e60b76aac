"""Rasters: scanning and stacking, RGB defaults, stretch, grid sampling, boundless reads, CRS math."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely import wkt
from shapely.geometry import Point

from geovec.backend.demo import write_geotiff, write_scene
from geovec.backend.errors import CRSError, InputError, NotFoundError, OutOfBoundsError, RasterError
from geovec.backend.raster import geometry
from geovec.backend.raster.scan import open_scene, scan_folder
from geovec.backend.raster.stretch import compute_stretch
from geovec.backend.raster.tiling import GridSampler, make_record, read_tile, tile_id
from geovec.backend.types import TilingParams


def _band(path: Path, value: float, *, size: int = 40, dtype: str = "uint16", **kw) -> Path:
    return write_geotiff(path, np.full((1, size, size), value, dtype=dtype), **kw)


# ---------------------------------------------------------------- scanning and stacks

def test_real_folder_scenes_and_nc_stack(shared_data: Path) -> None:
    r = scan_folder(shared_data)
    assert r.errors == []
    by_name = {s.name: s for s in r.scenes}
    assert set(by_name) == {"lsat7_2000", "landsat96_labelled_pixels", "L7_ETMs", "rgbn", "OSBS_029"}
    nc = by_name["lsat7_2000"]
    assert [Path(b.path).name for b in nc.bands] == [f"lsat7_2000_{b}.tif" for b in (10, 20, 30, 40, 50, 70)]
    assert nc.rgb == (3, 2, 1) and nc.dtype == "float32"  # ETM+ red, green, blue = bands 3, 2, 1
    assert geometry.parse_crs(nc.crs_wkt).to_epsg() is None  # the non-EPSG Lambert CRS, as the file has it
    assert by_name["L7_ETMs"].rgb == (3, 2, 1) and by_name["L7_ETMs"].count == 6
    assert by_name["rgbn"].rgb == (1, 2, 3) and by_name["OSBS_029"].rgb == (1, 2, 3)
    assert by_name["landsat96_labelled_pixels"].rgb == (1, 1, 1)
    assert len({s.scene_id for s in r.scenes}) == 5


def test_stacks_by_stem_and_grid_landsat8_names_and_explicit_groups(tmp_path: Path) -> None:
    d = tmp_path / "f"
    for b, v in ((2, 100), (3, 200), (4, 300), (5, 400)):
        _band(d / f"LC08_L2SP_017040_B{b}.TIF", v)
    _band(d / "other_1.tif", 1)  # same stem as other_2 but another grid -> two single scenes
    _band(d / "other_2.tif", 2, origin=(500000.0, 3300000.0))
    _band(d / "pair" / "a.tif", 5)
    _band(d / "pair" / "b.tif", 6)
    (d / ".hidden").mkdir()
    _band(d / ".hidden" / "x_1.tif", 1)
    r = scan_folder(d, groups={"ab": ["pair/b.tif", "pair/a.tif"]})
    assert r.errors == []
    names = sorted(s.name for s in r.scenes)
    assert names == ["LC08_L2SP_017040", "ab", "other_1", "other_2"]
    l8 = next(s for s in r.scenes if s.name.startswith("LC08"))
    assert [Path(b.path).name[-7:] for b in l8.bands] == ["_B2.TIF", "_B3.TIF", "_B4.TIF", "_B5.TIF"]
    assert l8.rgb == (3, 2, 1)  # OLI red/green/blue = B4, B3, B2 = scene bands 3, 2, 1
    ab = next(s for s in r.scenes if s.name == "ab")
    assert [Path(b.path).name for b in ab.bands] == ["b.tif", "a.tif"]
    bad = scan_folder(d, bands=(1, 2, 9))
    assert not bad.scenes and len(bad.errors) == 5  # every scene has < 9 bands: each one reported
    assert all("do not fit" in reason for _, reason in bad.errors)


def test_colour_interpretation_and_band_override(tmp_path: Path) -> None:
    p = write_geotiff(tmp_path / "bgr.tif", np.zeros((3, 16, 16), dtype="uint8"))
    from rasterio.enums import ColorInterp

    with rasterio.open(p, "r+") as dst:
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    assert open_scene(p).rgb == (3, 2, 1)
    assert open_scene(p, bands=(1, 1, 2)).rgb == (1, 1, 2)
    with pytest.raises(InputError):
        open_scene(p, bands=(0, 1, 2))


def test_bad_files_are_errors_not_crashes(tmp_path: Path) -> None:
    (tmp_path / "junk.tif").write_text("not a tiff")
    write_geotiff(tmp_path / "nocrs.tif", np.zeros((1, 8, 8), dtype="uint8"), crs=None)
    _band(tmp_path / "s_1.tif", 1, size=8)
    _band(tmp_path / "s_2.tif", 1, size=9)  # another grid: not stackable with s_1
    with pytest.raises(RasterError, match="not a readable raster"):
        open_scene(tmp_path / "junk.tif")
    with pytest.raises(RasterError, match="no CRS"):
        open_scene(tmp_path / "nocrs.tif")
    with pytest.raises(NotFoundError):
        open_scene(tmp_path / "missing.tif")
    with pytest.raises(RasterError, match="not on one grid"):
        open_scene([tmp_path / "s_1.tif", tmp_path / "s_2.tif"])
    r = scan_folder(tmp_path)
    assert sorted(Path(p).name for p, _ in r.errors) == ["junk.tif", "nocrs.tif"]
    assert sorted(s.name for s in r.scenes) == ["s_1", "s_2"]
    with pytest.raises(NotFoundError):
        scan_folder(tmp_path / "nope")


# ---------------------------------------------------------------- stretch and reads

def test_stretch_16bit_percentiles_nodata_and_float_nan(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(1000, 5001, size=(3, 128, 128)).astype("uint16")
    data[:, :10, :] = 0  # nodata strip must not drag the low percentile to 0
    p = write_geotiff(tmp_path / "u16.tif", data, nodata=0)
    s = open_scene(p)
    st = compute_stretch(s)
    assert st.method == "percentile"
    for lo, hi in zip(st.low, st.high, strict=True):
        assert 1050 < lo < 1150 and 4850 < hi < 4950
    img, vf = read_tile(s, (0, 0, 128, 128), st)
    assert img.dtype == np.uint8 and img.shape == (128, 128, 3)
    assert math.isclose(vf, 118 / 128, rel_tol=1e-6)
    assert img[:10].max() == 0 and img[10:].mean() > 100

    f = rng.random((3, 32, 32)).astype("float32")
    f[0, 0, :] = np.nan
    s2 = open_scene(write_geotiff(tmp_path / "f32.tif", f))
    st2 = compute_stretch(s2)
    assert all(np.isfinite(st2.low)) and all(np.isfinite(st2.high))
    _, vf2 = read_tile(s2, (0, 0, 32, 32), st2)
    assert math.isclose(vf2, 31 / 32)
    assert compute_stretch(open_scene(write_scene(tmp_path / "u8.tif", "water", size=32))).method == "identity"


def test_stretch_reads_decimated_not_full_res(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write_geotiff(tmp_path / "big.tif", np.arange(2048 * 64, dtype="uint16").reshape(1, 64, 2048))
    shapes: list[tuple[int, ...]] = []
    orig = rasterio.io.DatasetReader.read

    def spy(self, *a, **kw):
        out = orig(self, *a, **kw)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    compute_stretch(open_scene(p))
    assert shapes and all(max(s[-2:]) <= 1024 for s in shapes)


def test_boundless_reads_and_resampling(tmp_path: Path) -> None:
    s = open_scene(write_scene(tmp_path / "w.tif", "urban", size=24))
    st = compute_stretch(s)
    img, vf = read_tile(s, (0, 0, 32, 32), st)
    assert img.shape == (32, 32, 3) and math.isclose(vf, 24 * 24 / 32 / 32)
    assert img[24:, :].max() == 0 and img[:, 24:].max() == 0
    small, vf2 = read_tile(s, (0, 0, 32, 32), st, out_size=16)
    assert small.shape == (16, 16, 3) and math.isclose(vf2, 12 * 12 / 16 / 16)
    outside, vf3 = read_tile(s, (100, 100, 8, 8), st)
    assert vf3 == 0.0 and outside.max() == 0
    with rasterio.open(s.sources[0]) as src:
        native = src.read(window=((4, 12), (4, 12))).transpose(1, 2, 0)
    same, _ = read_tile(s, (4, 4, 8, 8), st)
    assert np.array_equal(same, native)  # 8-bit: identity, no resampling at native size


def test_grid_sampler_counts_overlap_edges_and_resolution(tmp_path: Path) -> None:
    s = open_scene(write_scene(tmp_path / "a.tif", "water", size=100))
    g = GridSampler(s, TilingParams(tile_size=32))
    wins = list(g)
    assert len(g) == len(wins) == 16
    assert sorted({w[0] for w in wins}) == [0, 32, 64, 68]  # the last column aligned to the edge
    g2 = GridSampler(s, TilingParams(tile_size=40, overlap=0.5))
    assert g2.stride == 20 and sorted({w[1] for w in g2}) == [0, 20, 40, 60]
    g3 = GridSampler(s, TilingParams(tile_size=25, resolution=20.0))  # 10 m pixels -> 50-px windows
    assert g3.native_size == 50 and len(g3) == 4
    tiny = open_scene(write_geotiff(tmp_path / "t.tif", np.ones((3, 3, 3), dtype="uint8")))
    assert list(GridSampler(tiny, TilingParams(tile_size=32))) == [(0, 0, 32, 32)]
    with pytest.raises(InputError):
        GridSampler(s, TilingParams(overlap=0.95))
    assert tile_id(s, (0, 0, 32, 32)) == tile_id(open_scene(s.sources[0]), (0, 0, 32, 32))
    assert tile_id(s, (0, 0, 32, 32)) != tile_id(s, (32, 0, 32, 32))


def test_records_carry_crs_bounds_footprint_and_gsd(shared_data: Path) -> None:
    s = open_scene(shared_data / "neon_osbs" / "OSBS_029.tif")
    rec = make_record(s, (100, 200, 50, 50), valid_fraction=1.0, out_size=25)
    with rasterio.open(s.sources[0]) as src:
        x0, y1 = src.transform @ (100, 200)
        x1, y0 = src.transform @ (150, 250)
    assert np.allclose(rec.bounds, (x0, y0, x1, y1))
    assert rec.crs_wkt == s.crs_wkt and rec.sources == s.sources
    assert math.isclose(rec.gsd, 0.2, rel_tol=1e-6)  # 0.1 m pixels seen at half size
    fp = wkt.loads(rec.footprint_wgs84)
    assert fp.contains(Point(rec.center_lon, rec.center_lat))
    assert 29 < rec.center_lat < 30 and -83 < rec.center_lon < -81


# ---------------------------------------------------------------- CRS math

def test_parse_crs_forms() -> None:
    assert geometry.parse_crs("EPSG:4326").to_epsg() == 4326
    assert geometry.parse_crs("32617").to_epsg() == 32617
    assert geometry.parse_crs(2264).to_epsg() == 2264
    assert geometry.parse_crs("+proj=longlat +datum=WGS84 +no_defs").is_geographic
    for bad in ("EPSG:99999", "", "not a crs"):
        with pytest.raises(CRSError):
            geometry.parse_crs(bad)


@pytest.mark.parametrize("rel", ["nc_landsat7/lsat7_2000_10.tif", "olinda_landsat7/L7_ETMs.tif",
                                 "haiti_rgbn/rgbn.tif", "neon_osbs/OSBS_029.tif"])
def test_round_trips_on_real_rasters(shared_data: Path, rel: str) -> None:
    s = open_scene(shared_data / rel)
    cols = np.array([0.5, s.width / 3, s.width - 0.5])
    rows = np.array([0.5, s.height / 2, s.height - 0.5])
    # pixels -> lat/lon -> pixels
    latlon = [geometry.pixel_to_latlon(s, c, r) for c, r in zip(cols, rows, strict=True)]
    back_c, back_r = geometry.to_pixels(s, [ll[1] for ll in latlon], [ll[0] for ll in latlon], "EPSG:4326")
    assert np.allclose(back_c, cols, atol=1e-6) and np.allclose(back_r, rows, atol=1e-6)
    # a box in the raster's own CRS and in Web Mercator -> pixel box -> image box -> polygon -> pixel box
    pbox = (s.width * 0.25, s.height * 0.25, s.width * 0.5, s.height * 0.5)
    native = geometry.window_to_geometry(s, (int(pbox[0]), int(pbox[1]), int(pbox[2] - pbox[0]),
                                            int(pbox[3] - pbox[1])), s.crs_wkt)
    got = geometry.box_to_pixel_box(s, native.bounds, s.crs_wkt)
    assert np.allclose(got, (int(pbox[0]), int(pbox[1]), int(pbox[0]) + int(pbox[2] - pbox[0]),
                             int(pbox[1]) + int(pbox[3] - pbox[1])), atol=1e-6)
    window = geometry.context_window(s, got, 64)
    assert window[2] == window[3] >= 64
    assert 0 <= window[0] and window[0] + window[2] <= max(s.width, window[2])
    ibox = geometry.pixel_box_to_image_box(got, window, 448)
    assert all(0 <= v <= 448 for v in ibox)
    poly = geometry.image_box_to_geometry(s, window, 448, ibox, "EPSG:3857")
    again = geometry.box_to_pixel_box(s, poly.bounds, "EPSG:3857")
    assert np.allclose(again, got, atol=0.05 * s.width)  # bounds of a reprojected box: a little larger
    assert geometry.reproject_geometry(poly, "EPSG:3857", s.crs_wkt).area == pytest.approx(native.area, rel=0.02)


def test_unusual_crs_ground_resolution(tmp_path: Path) -> None:
    ft = open_scene(write_scene(tmp_path / "ft.tif", "urban", size=16, crs="EPSG:2264", origin=(2e6, 7e5), res=30.0))
    assert geometry.ground_resolution(ft) == pytest.approx(30 * 1200 / 3937, rel=1e-6)  # US survey feet
    ea = open_scene(write_scene(tmp_path / "ea.tif", "forest", size=16, crs="EPSG:5070", origin=(1.5e6, 1.6e6)))
    assert geometry.ground_resolution(ea) == pytest.approx(10.0)
    geo = open_scene(write_scene(tmp_path / "ll.tif", "water", size=16, crs="EPSG:4326", origin=(10.0, 60.0),
                                 res=0.001))
    assert geometry.ground_resolution(geo) == pytest.approx(111.32 * math.cos(math.radians(59.992)), rel=1e-3)
    lat, lon = geometry.pixel_to_latlon(geo, 8, 8)
    assert lat == pytest.approx(59.992) and lon == pytest.approx(10.008)


def test_bad_boxes_and_points(tmp_path: Path) -> None:
    s = open_scene(write_scene(tmp_path / "u.tif", "water", size=64))  # EPSG:32617 at (400000, 3300000), 10 m
    x0, y0 = 400000.0, 3300000.0
    with pytest.raises(InputError, match="inverted"):
        geometry.box_to_pixel_box(s, (x0 + 100, y0 - 100, x0 + 50, y0 - 50), "EPSG:32617")
    with pytest.raises(InputError, match="NaN"):
        geometry.box_to_pixel_box(s, (x0, float("nan"), x0 + 50, y0), "EPSG:32617")
    with pytest.raises(OutOfBoundsError, match="outside"):
        geometry.box_to_pixel_box(s, (x0 + 1e5, y0 - 10, x0 + 1e5 + 50, y0), "EPSG:32617")
    with pytest.raises(OutOfBoundsError, match="lon/lat"):
        geometry.to_pixels(s, [10.0], [95.0], "EPSG:4326")
    with pytest.raises(CRSError):
        geometry.box_to_pixel_box(s, (0, 0, 1, 1), "EPSG:0")
    partly = geometry.box_to_pixel_box(s, (x0 - 100, y0 - 100, x0 + 100, y0 + 100), "EPSG:32617")
    assert partly == (0.0, 0.0, 10.0, 10.0)  # clipped to the raster
