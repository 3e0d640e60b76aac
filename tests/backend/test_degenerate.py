"""Degenerate input is named, not hidden: few-shot with too few examples/blocks per class for
cross-validation says so in one line and what it still does (tiny model, real index)."""

from __future__ import annotations

from pathlib import Path

import pytest

from geovec.backend.cli import main
from geovec.backend.indexing import index_folder
from geovec.backend.schemas_workflows import FewShotRequest
from geovec.backend.types import TilingParams
from geovec.backend.workflows import service
from tests.backend.wfdata import CELLS, TILE, label_layer, write_two_class_scene


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> dict:
    root = tmp_path_factory.mktemp("degenerate")
    folder = root / "rasters"
    folder.mkdir()
    write_two_class_scene(folder)
    idx = root / "idx"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE))
    return {"root": root, "idx": str(idx)}


def test_fewshot_one_example_per_class_is_not_a_zero_accuracy(world, tmp_path: Path, capsys) -> None:
    labels = label_layer(tmp_path / "two.geojson", [(0, 0, "water"), (7, 3, "urban")])
    req = FewShotRequest(index=world["idx"], labels=str(labels), block_km=0.32, out_dir=str(tmp_path / "maps"))
    resp = service.run_fewshot(req)
    cv = resp.cv
    assert cv is not None and cv.accuracy == {} and cv.nested_accuracy is None and cv.per_class == {}
    assert "accuracy not measured" in cv.note and "'water' (1 feature(s), 1 block(s))" in cv.note
    assert "'urban'" in cv.note and cv.method == "prototype" and "map uses prototype" in cv.note
    assert resp.tiles == 32 and set(resp.counts) == {"urban", "water"} and resp.class_maps  # it still maps
    # one class thin, the other well spread: still named
    cells = [c for c in CELLS if c[2] == "water"] + [(7, 3, "urban")]
    one = service.run_fewshot(req.model_copy(update={"labels": str(label_layer(tmp_path / "one.geojson", cells)),
                                                     "out_dir": None}))
    assert one.cv is not None and "'urban'" in one.cv.note and "'water'" not in one.cv.note
    assert one.cv.nested_accuracy is None  # two classes, one thin: nothing left to cross-validate
    # the CLI says it in one line, not 0.000
    assert main(["fewshot", "--index", world["idx"], "--labels", str(labels), "--block-km", "0.32"]) == 0
    out = capsys.readouterr().out
    assert "0.000" not in out and sum("accuracy not measured" in line for line in out.splitlines()) == 1


def test_fewshot_measures_the_classes_it_can_and_names_a_thin_one(world, tmp_path: Path) -> None:
    # three classes: water and urban spread over several blocks, 'pier' in one block only
    cells = [c for c in CELLS if c[2] in ("water", "urban")] + [(3, 1, "pier")]
    labels = label_layer(tmp_path / "three.geojson", cells)
    req = FewShotRequest(index=world["idx"], labels=str(labels), block_km=0.32)
    cv = service.run_fewshot(req).cv
    assert cv is not None and cv.nested_accuracy is not None and 0.0 <= cv.nested_accuracy <= 1.0
    assert "'pier' (1 feature(s), 1 block(s))" in cv.note and "counts their examples as misses" in cv.note
    assert "'water'" not in cv.note and "'urban'" not in cv.note


def test_lat_lon_order_hint_when_swapping_lands_in_a_scene(world, capsys) -> None:
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32617", "EPSG:4326", always_xy=True).transform(400300.0, 3299700.0)
    code = main(["search", "--index", world["idx"], "--point", f"{lat:.6f}", f"{lon:.6f}", "--crs", "EPSG:4326",
                 "--local"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert "did you give lat lon" in err and f"the point {lon:.6g} {lat:.6g} lies in" in err and "scene two" in err
    box = [lat - 0.001, lon - 0.001, lat + 0.001, lon + 0.001]
    code = main(["search", "--index", world["idx"], "--box", *map(str, box), "--crs", "EPSG:4326", "--local"])
    err = capsys.readouterr().err
    assert code != 0 and "did you give lat lon" in err and "the box" in err
    # far from any scene either way: no hint, the plain message
    code = main(["search", "--index", world["idx"], "--point", "10", "10", "--crs", "EPSG:4326", "--local"])
    err = capsys.readouterr().err
    assert code != 0 and "outside every indexed scene" in err and "lat lon" not in err
