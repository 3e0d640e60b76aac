"""Evaluation: metrics on hand-built similarities, and the six task families on written fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geovec.training.eval.metrics import haversine_km, precision_at_1, ranks_of_positives, recall_at
from geovec.training.eval.ranking import rank_positives

from . import miniatures

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


def test_ranking_in_chunks_equals_a_full_stable_argsort() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(37, 8)).astype(np.float32)
    c = rng.normal(size=(23, 8)).astype(np.float32)
    c[5] = c[3]  # exact ties between candidates
    c[11] = c[3]
    q[4] = c[3]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    pos = [set(rng.choice(23, size=int(rng.integers(1, 4)), replace=False).tolist()) for _ in range(37)]
    pos[4] = {5, 11}  # both tie with candidate 3, ranked first by index
    full = ranks_of_positives(q @ c.T, pos)
    for chunk in (23, 23 * 5, 10**6):  # one row, five rows, everything at once
        r = rank_positives(q, c, pos, k=7, chunk_elements=chunk)
        assert r.ranks.tolist() == full.tolist()
        assert r.top1.tolist() == np.argmax(q @ c.T, axis=1).tolist()
        order = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :7]
        assert (np.sort(r.topk, axis=1) == np.sort(order, axis=1)).mean() > 0.95  # ties at the 7th place may differ
    assert r.ranks[4] == 1 and precision_at_1(q @ c.T, pos) == float(np.mean(r.ranks == 0))
    with pytest.raises(ValueError, match="no positive"):
        rank_positives(q[:1], c, [set()])


def test_six_families_report(tmp_path: Path, tiny_embedder) -> None:
    from geovec.training.eval.harness import run_eval

    specs = miniatures.write_all(tmp_path / "data")
    summary = run_eval(tiny_embedder, specs, tmp_path / "out", batch_size=4)
    tasks = summary["tasks"]
    assert set(tasks) == {
        "scene_classification", "scene_classification@AID", "cross_modal_retrieval:text2image",
        "cross_modal_retrieval:image2text", "cross_modal_retrieval:text2image@dataset_RSITMD.json",
        "cross_modal_retrieval:image2text@dataset_RSITMD.json", "vqa", "vqa@RSVQA_HR",
        "grounding:referring_expression", "grounding:region_caption", "compositional_retrieval", "geo_localization"}
    assert (tasks["scene_classification"]["n_queries"], tasks["scene_classification"]["n_candidates"]) == (6, 3)
    # test splits only: RSICD 3 of 5 images (2 captions each), RSVQA LR 2 test images x 2 questions,
    # HR's test (not test_phili) 3 images, DIOR-RSVG test.txt's 3 objects of 4
    assert tasks["cross_modal_retrieval:text2image"]["n_queries"] == 6
    assert tasks["cross_modal_retrieval:image2text"]["n_queries"] == 3
    assert tasks["cross_modal_retrieval:image2text@dataset_RSITMD.json"]["n_queries"] == 2
    assert tasks["vqa"]["n_queries"] == 4 and tasks["vqa@RSVQA_HR"]["n_queries"] == 6
    assert tasks["grounding:region_caption"]["n_queries"] == 3
    for r in tasks.values():
        assert all(0.0 <= r[k] <= 1.0 for k in ("p_at_1", "R@1", "R@10", "mean_recall") if k in r)
    assert tasks["cross_modal_retrieval:image2text"]["R@10"] == 1.0  # 6 candidates: always within the top 10
    assert 0.0 <= tasks["geo_localization"]["median_km"] < 20040
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| vqa@RSVQA_HR | vqa |" in md and (tmp_path / "out" / "figures" / "tasks.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "results.json").read_text())["tasks"].keys() == tasks.keys()


def test_tasks_use_the_models_instructions(tmp_path: Path, tiny_embedder) -> None:
    from geovec.training.eval.harness import build_task

    instr = tiny_embedder.instructions
    vqa = build_task(miniatures.rsvqa_lr(tmp_path), tiny_embedder)
    q = vqa.sides["questions"][0]
    assert q.instruction == instr["vqa"].replace("{question}", "Is a water area present?") and q.text is None
    assert {it.instruction for it in vqa.sides["answers"]} == {instr["text_doc"]}
    cls = build_task(miniatures.aid(tmp_path), tiny_embedder)
    assert {it.instruction for it in cls.sides["images"]} == {instr["classification"]}
    assert [it.text for it in cls.sides["classes"]] == ["a satellite image of bare land",
                                                         "a satellite image of dense residential",
                                                         "a satellite image of pond"]
    g = build_task(miniatures.dior_rsvg(tmp_path), tiny_embedder)
    assert {it.instruction for it in g.sides["expressions"]} == {instr["referring_query"]}
    assert {it.instruction for it in g.sides["regions"]} == {instr["region_query"]}


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


def test_geovec_eval_runs_on_all_six_layouts(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The installed command (entry point) on miniatures of UCMerced, AID, RSICD, RSITMD, RSVQA LR/HR, DIOR-RSVG."""
    specs = miniatures.write_all(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "geovec.backend", "eval", "--model", str(tiny_model_dir),
                           "--tasks", *specs, "--out", str(tmp_path / "out"), "--batch-size", "8", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = json.loads(proc.stdout)["tasks"]
    assert len(tasks) == 12 and tasks["grounding:referring_expression"]["split"] == "test"
    train = subprocess.run([sys.executable, "-m", "geovec.backend", "eval", "--model", str(tiny_model_dir), "--split",
                            "train", "--tasks", specs[-3], "--json"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert json.loads(train.stdout)["tasks"]["grounding:region_caption"]["n_queries"] == 1  # train.txt: object 0
    bad = subprocess.run([sys.executable, "-m", "geovec.backend", "eval", "--model", str(tiny_model_dir), "--split",
                          "val", "--tasks", specs[4]], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert bad.returncode == 1 and "splits: ['test', 'train']" in bad.stderr


def test_polygon_bootstrap_interval() -> None:
    from geovec.training.eval.metrics import cluster_bootstrap_ci

    # 10 polygons of 20 chips, all right or all wrong: the interval is that of 10 coin flips, not 200
    correct = np.repeat([1, 1, 1, 1, 1, 0, 0, 0, 1, 1], 20)
    clusters = np.repeat(np.arange(10), 20)
    lo, hi = cluster_bootstrap_ci(correct, clusters)
    assert lo <= 0.7 <= hi and hi - lo > 0.4
    lo_chips, hi_chips = cluster_bootstrap_ci(correct, np.arange(200))  # chips taken as independent
    assert hi_chips - lo_chips < 0.15
    assert cluster_bootstrap_ci(np.ones(30), np.repeat(np.arange(3), 10)) == (1.0, 1.0)
