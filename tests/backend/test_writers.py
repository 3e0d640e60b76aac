"""Every file GeoVec writes opens in the right place in GDAL: GeoJSON (RFC 7946 lon/lat, or a CRS member
GDAL honours), CSV (WKT column + .prj + .csvt) and class maps (colour table, category names, QML legend),
all read back through real GDAL (fiona, rasterio, gdalinfo)."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import fiona
import pytest
import rasterio
from pyproj import CRS, Transformer
from shapely.geometry import shape

from geovec.backend.cli import main
from geovec.backend.demo import write_sample_folder
from geovec.backend.indexing import index_folder
from geovec.backend.schemas_workflows import ClassifyRequest
from geovec.backend.types import TilingParams
from geovec.backend.workflows import service
from tests.backend.wfdata import CRS as SCENE_CRS
from tests.backend.wfdata import write_two_class_scene

ALBERS = "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +x_0=0 +y_0=0 +datum=NAD83 +units=m +no_defs"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_embedder, tiny_model_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("writers")
    folder = write_sample_folder(root / "rasters", size=64)
    idx = root / "idx"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=32))
    two = root / "two"
    two.mkdir()
    write_two_class_scene(two)
    idx2 = root / "idx2"
    index_folder(two, idx2, tiny_embedder, params=TilingParams(tile_size=16))
    return {"root": root, "idx": str(idx), "idx2": str(idx2), "model": str(tiny_model_dir)}


def _search(env: dict, out: Path, *extra: str) -> dict:
    assert main(["search", "--index", env["idx"], "--text", "water", "--k", "6", "--local", "--model", env["model"],
                 "--geojson", str(out), *extra]) == 0
    return json.loads(out.read_text()) if out.suffix != ".csv" else {}


def _centres_match(path: Path, crs: str, props_of: dict | None = None) -> int:
    """Each feature read back by GDAL, taken from the file's own CRS to WGS84, centres on its tile/region."""
    with fiona.open(path) as src:
        assert CRS.from_user_input(src.crs_wkt).equals(CRS.from_user_input(crs)), (src.crs_wkt[:80], crs)
        to_wgs = Transformer.from_crs(CRS.from_user_input(src.crs_wkt), "EPSG:4326", always_xy=True)
        n = 0
        for f in src:
            p = f["properties"]
            if p.get("level") == "region":
                continue
            c = shape(f["geometry"]).centroid
            lon, lat = to_wgs.transform(c.x, c.y)
            assert lon == pytest.approx(float(p["center_lon"]), abs=2e-4)
            assert lat == pytest.approx(float(p["center_lat"]), abs=2e-4)
            n += 1
    return n


def test_geojson_is_rfc7946_lon_lat_by_default(env, capsys) -> None:
    body = _search(env, env["root"] / "wgs.geojson")
    capsys.readouterr()
    assert "crs" not in body  # RFC 7946: lon/lat, no crs member
    assert _centres_match(env["root"] / "wgs.geojson", "EPSG:4326") == 6


@pytest.mark.parametrize("crs", ["EPSG:2264", "EPSG:32617", ALBERS])
def test_projected_geojson_opens_in_its_crs(env, capsys, crs: str) -> None:
    out = env["root"] / f"out_{abs(hash(crs))}.geojson"
    body = _search(env, out, "--out-crs", crs)
    capsys.readouterr()
    assert body["crs"]["type"] == "name"
    assert _centres_match(out, crs) == 6  # GDAL places them in that CRS, not at lon 683579 lat 1889958


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="GDAL's ogrinfo is not installed")
def test_ogrinfo_reads_the_projected_crs(env, capsys) -> None:
    out = env["root"] / "sp.geojson"
    _search(env, out, "--out-crs", "EPSG:2264")
    capsys.readouterr()
    info = subprocess.run(["ogrinfo", "-so", "-al", str(out)], capture_output=True, text=True, check=True).stdout
    assert "NAD83 / North Carolina (ftUS)" in info


def test_csv_loads_with_its_crs(env, capsys) -> None:
    out = env["root"] / "hits.csv"
    _search(env, out, "--out-crs", "EPSG:32617")
    capsys.readouterr()
    assert out.with_suffix(".prj").is_file() and out.with_suffix(".csvt").is_file()
    assert _centres_match(out, "EPSG:32617") == 6  # GDAL's CSV driver: WKT column + .prj
    with fiona.open(out) as src:
        assert src.schema["properties"]["score"].startswith("float")
        assert src.schema["properties"]["rank"].startswith("int")


def test_class_maps_carry_their_legend(env, tiny_embedder, tmp_path: Path) -> None:
    from geovec.backend.writers import NAMED_COLOURS, class_colours

    classes = ["water", "town", "trees"]
    req = ClassifyRequest(index=env["idx2"], classes=classes, out_dir=str(tmp_path / "maps"), out_crs=SCENE_CRS)
    resp = service.run_classify(req, tiny_embedder)
    (cm,) = resp.class_maps
    colours = class_colours(classes)
    assert colours[0] == NAMED_COLOURS["water"] and colours[2] == NAMED_COLOURS["tree"]
    with rasterio.open(cm.path) as ds:
        cmap = ds.colormap(1)
        assert cmap[0][3] == 0 and [cmap[i + 1][:3] for i in range(3)] == colours
    if shutil.which("gdalinfo"):
        info = json.loads(subprocess.run(["gdalinfo", "-json", cm.path], capture_output=True, text=True,
                                         check=True).stdout)
        assert info["bands"][0]["categories"] == ["not classified", *classes]
    qml = ET.parse(Path(cm.path).with_suffix(".qml")).getroot()
    entries = qml.findall(".//paletteEntry")
    assert [(e.get("value"), e.get("label")) for e in entries] == [("1", "water"), ("2", "town"), ("3", "trees")]
    assert entries[0].get("color") == "#{:02x}{:02x}{:02x}".format(*NAMED_COLOURS["water"])
    # the tile polygons in the asked CRS, read back by GDAL
    with fiona.open(resp.geojson_path) as src:
        assert CRS.from_user_input(src.crs_wkt).equals(CRS.from_user_input(SCENE_CRS)) and len(src) == resp.tiles


def test_geojson_without_crs_code_is_written_as_wkt(tmp_path: Path) -> None:
    from geovec.backend.writers import crs_member, write_geojson

    assert crs_member("EPSG:4326") is None and crs_member("OGC:CRS84") is None
    assert crs_member("EPSG:2264") == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2264"}}
    body = {"type": "FeatureCollection", "crs": "EPSG:26771",
            "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [683579.0, 1889958.0]},
                          "properties": {}}]}
    write_geojson(tmp_path / "a.geojson", body, "EPSG:26771")
    write_geojson(tmp_path / "b.geojson", body, ALBERS)
    with fiona.open(tmp_path / "a.geojson") as a, fiona.open(tmp_path / "b.geojson") as b:
        assert CRS.from_user_input(a.crs_wkt).to_epsg() == 26771
        assert CRS.from_user_input(b.crs_wkt).equals(CRS.from_user_input(ALBERS))
