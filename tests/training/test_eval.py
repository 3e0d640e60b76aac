"""Evaluation: metrics on hand-built similarities, and the six task families on written fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geovec.training.eval.metrics import haversine_km, precision_at_1, ranks_of_positives, recall_at

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_on_known_similarities() -> None:
    sim = np.array([[0.9, 0.1, 0.0], [0.2, 0.1, 0.8], [0.3, 0.5, 0.4]])
    pos = [{0}, {1}, {2}]
    assert precision_at_1(sim, pos) == pytest.approx(1 / 3)
    assert ranks_of_positives(sim, pos).tolist() == [0, 2, 1]
    assert recall_at(sim, pos, ks=(1, 2, 3)) == {"R@1": pytest.approx(1 / 3), "R@2": pytest.approx(2 / 3), "R@3": 1.0}
    assert precision_at_1(sim, [{0}, {2}, {1}]) == 1.0
    # Raleigh -> Durham is about 33 km
    assert float(haversine_km(np.array([35.7796]), np.array([-78.6382]), np.array([35.9940]), np.array([-78.8986]))[0]) \
        == pytest.approx(33.5, abs=2.0)


def _img(path: Path, colour: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 48), colour).save(path)
    return path.name


def write_fixtures(root: Path) -> list[str]:
    """One small dataset per family, each in its public format."""
    cols = {"beach": (220, 200, 150), "forest": (30, 120, 40), "water": (20, 40, 120)}
    for c, rgb in cols.items():
        for i in range(2):
            _img(root / "ucm" / c / f"{c}{i:02d}.tif", tuple(min(255, v + 10 * i) for v in rgb))  # type: ignore[arg-type]
    imgs = [_img(root / "rsicd" / f"{c}.jpg", rgb) for c, rgb in cols.items()]
    (root / "rsicd" / "dataset_rsicd.json").write_text(json.dumps({"images": [
        {"filename": f, "split": "test", "sentences": [{"raw": f"a view of {f[:-4]}"}, {"raw": f"{f[:-4]} seen from above"}]}
        for f in imgs]}))
    (root / "comp").mkdir()
    for c, rgb in cols.items():
        _img(root / "comp" / f"{c}.png", rgb)
    (root / "comp" / "triplets.json").write_text(json.dumps([
        {"reference": "beach.png", "text": "covered with trees", "target": "forest.png"},
        {"reference": "forest.png", "text": "flooded", "target": "water.png"}]))
    vqa = root / "rsvqa"
    for i, rgb in enumerate(cols.values()):
        _img(vqa / "Images_LR" / f"{i}.tif", rgb)
    (vqa / "LR_split_test_questions.json").write_text(json.dumps({"questions": [
        {"id": i, "img_id": i, "type": "presence", "question": "Is there water?", "answers_ids": [i], "active": True}
        for i in range(3)]}))
    (vqa / "LR_split_test_answers.json").write_text(json.dumps({"answers": [
        {"id": i, "question_id": i, "answer": "yes" if i == 2 else "no", "active": True} for i in range(3)]}))
    (vqa / "LR_split_test_images.json").write_text(json.dumps({"images": [{"id": i, "active": True} for i in range(3)]}))
    rsvg = root / "rsvg"
    _img(rsvg / "JPEGImages" / "00001.jpg", (90, 90, 90))
    (rsvg / "Annotations").mkdir()
    (rsvg / "Annotations" / "00001.xml").write_text(
        "<annotation><filename>00001.jpg</filename>"
        + "".join(f"<object><name>{n}</name><bndbox><xmin>{x}</xmin><ymin>4</ymin><xmax>{x + 10}</xmax><ymax>20</ymax>"
                  f"</bndbox><description>the {n} at x {x}</description></object>" for n, x in (("ship", 2), ("tank", 30)))
        + "</annotation>")
    geo = root / "geo"
    for i, rgb in enumerate(cols.values()):
        _img(geo / f"g{i}.png", rgb)
    (geo / "table.csv").write_text("image,lat,lon\ng0.png,35.78,-78.64\ng1.png,-8.05,-34.88\ng2.png,48.85,2.35\n")
    return [f"scene_classification={root / 'ucm'}", f"cross_modal_retrieval={root / 'rsicd' / 'dataset_rsicd.json'}",
            f"compositional_retrieval={root / 'comp' / 'triplets.json'}", f"vqa={vqa}",
            f"grounding={rsvg / 'Annotations'}", f"geo_localization={geo / 'table.csv'}"]


def test_six_families_report(tmp_path: Path, tiny_embedder) -> None:
    from geovec.training.eval.harness import run_eval

    specs = write_fixtures(tmp_path / "data")
    summary = run_eval(tiny_embedder, specs, tmp_path / "out", batch_size=8)
    tasks = summary["tasks"]
    assert set(tasks) == {"scene_classification", "cross_modal_retrieval:text2image", "cross_modal_retrieval:image2text",
                          "compositional_retrieval", "vqa", "grounding:referring_expression", "grounding:region_caption",
                          "geo_localization"}
    assert tasks["scene_classification"]["n_candidates"] == 3 and tasks["scene_classification"]["n_queries"] == 6
    assert tasks["vqa"]["n_candidates"] == 2 and tasks["cross_modal_retrieval:text2image"]["n_queries"] == 6
    for r in tasks.values():
        assert all(0.0 <= r[k] <= 1.0 for k in ("p_at_1", "R@1", "R@10", "mean_recall") if k in r)
    assert tasks["cross_modal_retrieval:image2text"]["R@10"] == 1.0  # 6 candidates: always within the top 10
    assert 0.0 <= tasks["geo_localization"]["median_km"] < 20040
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| vqa | vqa |" in md and (tmp_path / "out" / "figures" / "tasks.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "results.json").read_text())["tasks"].keys() == tasks.keys()


def test_eval_cli_bad_spec(tmp_path: Path, tiny_model_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "geovec.backend", "eval", "--model", str(tiny_model_dir),
                           "--tasks", "nonsense=/x"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1 and "FAMILY=PATH" in proc.stderr


def test_holdout_spec_evaluates_a_training_config(tmp_path: Path, tiny_embedder) -> None:
    import yaml

    from geovec.training.eval.harness import run_eval

    from .synthetic import write_labels, write_scene

    cfg = {"data": {"raster": [str(write_scene(tmp_path / "s.tif"))], "labels": str(write_labels(tmp_path / "l.gpkg")),
                    "chip_size": 8, "image_size": 28, "block_size": 24, "val_per_class": 10}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    summary = run_eval(tiny_embedder, [f"holdout={tmp_path / 'c.yaml'}"], tmp_path / "out")
    r = summary["tasks"]["holdout:c"]
    assert r["chance"] == 0.25 and 0 < r["n"] <= 40 and 0.0 <= r["p_at_1"] <= 1.0
    assert "holdout:c" in (tmp_path / "out" / "results.md").read_text()
