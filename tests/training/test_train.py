"""End to end: train the tiny model on a labelled synthetic scene, evaluate, save, reload, resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geovec.training.config import Config
from geovec.training.trainer import Trainer

from .synthetic import write_labels, write_scene

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, model_dir: Path, **train: object) -> Config:
    scene = write_scene(tmp / "scene.tif") if not (tmp / "scene.tif").exists() else tmp / "scene.tif"
    labels = write_labels(tmp / "labels.gpkg") if not (tmp / "labels.gpkg").exists() else tmp / "labels.gpkg"
    return Config.from_dict({
        "model": str(model_dir),
        "output_dir": str(tmp / "run"),
        "data": {"raster": [str(scene)], "labels": str(labels), "chip_size": 8, "image_size": 28,
                 "samples_per_class": 60, "val_per_class": 30, "block_size": 24, "val_fraction": 0.3, "buffer": 4},
        "train": {"steps": 30, "batch_size": 16, "chunk_size": 8, "lr": 2e-3, "temperature": 0.05,
                  "log_every": 5, "checkpoint_every": 1000, **train},
    })


@pytest.mark.slow
def test_loss_falls_and_heldout_p_at_1_rises(tmp_path: Path, tiny_model_dir: Path) -> None:
    from geovec.backend.model.embedder import load_embedder
    from geovec.training.eval.report import write_train_report

    cfg = _config(tmp_path, tiny_model_dir)
    report = Trainer(cfg, progress=False).run()
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["event"] == "train"]
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
    chance = report["after"]["chance"]
    assert report["after"]["p_at_1"] >= 0.6 > chance + 0.3, report["after"]
    assert report["after"]["p_at_1"] > report["before"]["p_at_1"] + 0.2
    assert report["split"]["val_features"] > 0 and not report["split"]["classes_without_val"]
    files = write_train_report(report, cfg.output_dir)
    assert "P@1" in files["md"].read_text() and files["curves"].stat().st_size > 1000
    # the adapted checkpoint loads through the backend, as `geovec index --model DIR` does
    emb = load_embedder(report["model_dir"], device="cpu")
    from geovec.backend.types import EmbedInput

    vec = emb.encode([EmbedInput(instruction=emb.preset.instructions["text_query"], text="water")])
    assert vec.shape == (1, emb.dim) and abs(float(np.linalg.norm(vec)) - 1) < 1e-4


def test_few_steps_save_load_and_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.types import EmbedInput

    cfg = _config(tmp_path, tiny_model_dir, steps=4, checkpoint_every=2)
    cfg.eval.before = False
    Trainer(cfg, progress=False).run()
    run = tmp_path / "run"
    assert (run / "checkpoints" / "step-2" / "trainer_state.pt").exists()
    emb = load_embedder(str(run / "model"), device="cpu")
    vec = emb.encode([EmbedInput(instruction=emb.preset.instructions["tile"], image=np.zeros((28, 28, 3), np.uint8))])
    assert vec.shape == (1, emb.dim)
    # interrupted after step 2: drop what came later and run again -> resumes at step 3
    shutil.rmtree(run / "model")
    lines = (run / "train_log.jsonl").read_text().splitlines()
    (run / "train_log.jsonl").write_text("\n".join(x for x in lines if json.loads(x)["step"] <= 2) + "\n")
    report = Trainer(cfg, progress=False).run()
    steps = [json.loads(x)["step"] for x in (run / "train_log.jsonl").read_text().splitlines()
             if json.loads(x)["event"] == "train"]
    assert steps == [1, 4], steps  # step 1 not re-run: resumed from the step-2 checkpoint
    assert Path(report["model_dir"]).is_dir()


def test_lora_run_writes_adapter_and_merged_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    from geovec.backend.model.embedder import load_embedder

    cfg = _config(tmp_path, tiny_model_dir, steps=2)
    cfg.lora.enabled = True
    cfg.lora.r = 4
    cfg.eval.before = cfg.eval.after = False
    report = Trainer(cfg, progress=False).run()
    model_dir = Path(report["model_dir"])
    assert (model_dir / "adapter" / "adapter_config.json").exists()
    base = load_embedder(str(tiny_model_dir), device="cpu")
    tuned = load_embedder(str(model_dir), device="cpu")
    from geovec.backend.types import EmbedInput

    x = [EmbedInput(instruction=base.preset.instructions["text_query"], text="forest")]
    assert tuned.dim == base.dim
    assert not np.allclose(tuned.encode(x), base.encode(x), atol=1e-6)

    # the adapted checkpoint indexes and searches with the backend's own commands, no conversion
    from geovec.backend.cli import main

    folder = tmp_path / "scene-folder"
    folder.mkdir()
    shutil.copy(tmp_path / "scene.tif", folder / "scene.tif")
    idx = tmp_path / "idx"
    assert main(["index", str(folder), "--index", str(idx), "--model", str(model_dir), "--tile-size", "32",
                 "--no-progress", "--json"]) == 0
    info = json.loads((idx / "index.json").read_text())
    assert info["count"] == 9 and info["checkpoint"] == tuned.checkpoint_id  # 96x96 scene, 32-px tiles
    out = tmp_path / "hits.geojson"
    assert main(["search", "--index", str(idx), "--text", "forest", "--k", "3", "--geojson", str(out)]) == 0
    hits = json.loads(out.read_text())["features"]
    assert [h["properties"]["rank"] for h in hits] == [1, 2, 3]
    assert all(h["properties"]["source"] == str((folder / "scene.tif").resolve()) for h in hits)


def test_cli_train_bad_config_exits_nonzero(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("train:\n  stepz: 1\n")
    proc = subprocess.run([sys.executable, "-m", "geovec.backend", "train", "--config", str(tmp_path / "c.yaml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "stepz" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [4, 2])  # 4: one chunk per rank (no GradCache); 2: GradCache under no_sync
def test_ddp_two_ranks_equal_one_rank_on_the_full_batch(tmp_path: Path, tiny_model_dir: Path, chunk: int) -> None:
    """torchrun, two CPU ranks (gloo, DistributedDataParallel): both ranks end with identical weights, and
    the loss curve and weights equal one process training on the whole batch.

    With one chunk the synced forward is the text-only document side (region captions), so the vision
    tower's gradient comes from the earlier, unsynced forward: DDP must still all-reduce it."""
    import yaml
    from safetensors.torch import load_file

    train = {"steps": 3, "batch_size": 8, "chunk_size": chunk, "log_every": 1, "num_threads": 1,
             "hard_negatives": chunk == 2}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    pairs = ["region_caption"] if chunk == 4 else ["scene_class"]
    one = _config(tmp_path / "one", tiny_model_dir, **train)
    one.data.pair_types = pairs
    one.eval.before = one.eval.after = False
    Trainer(one, progress=False).run()
    two = _config(tmp_path / "two", tiny_model_dir, **train)
    raw = two.to_dict()
    raw["data"]["pair_types"] = pairs
    raw["eval"] = {"before": False, "after": False}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "geovec.training.cli", "train", "--config", str(tmp_path / "c.yaml"), "--no-progress", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # one JSON document: only rank 0 reports
    assert report["world_size"] == 2 and len(set(report["replica_digests"])) == 1, report["replica_digests"]

    def losses(run: Path) -> list[float]:
        rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["event"] == "train"]

    ref, got = losses(tmp_path / "one" / "run"), losses(tmp_path / "two" / "run")
    assert len(got) == 3 and got == pytest.approx(ref, rel=1e-4), (got, ref)
    w1 = load_file(str(tmp_path / "one" / "run" / "model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "run" / "model" / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    moved = [k for k in w1 if not torch.equal(w1[k], base[k])]
    assert moved and w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=2e-5, rtol=1e-4)
