"""Training from the vlm2vec preset: its LoRA merged at load, then full fine-tuning or a new LoRA.

The preset's checkpoint is stood in for by a tiny base written in the VLM2Vec layout plus a
tiny adapter saved with the module paths of VLM2Vec's published adapters (transformers < 4.52).
Three ways to name it: the adapter folder, a base folder whose geovec.json names the adapter,
and the preset name itself resolved from an offline Hugging Face cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from geovec.backend.model.embedder import load_embedder
from geovec.backend.model.tiny import write_tiny_adapter, write_tiny_model
from geovec.backend.types import EmbedInput
from geovec.training.config import Config
from geovec.training.trainer import Trainer

from .synthetic import write_labels, write_scene

ROOT = Path(__file__).resolve().parents[2]
PRESET = "vlm2vec-qwen2vl-2b"
TOL = 1e-5


@pytest.fixture(scope="module")
def preset_ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm2vec-train")
    base = write_tiny_model(root / "base", seed=3, preset=PRESET)
    adapter = write_tiny_adapter(root / "adapter", base, seed=4, legacy_layout=True)
    # a local copy of the preset: base folder + geovec.json naming its adapter sub-folder
    copy = root / "copy"
    shutil.copytree(base, copy)
    shutil.copytree(adapter, copy / "adapter")
    (copy / "geovec.json").write_text(json.dumps({"preset": PRESET, "adapter": "adapter"}))
    scene, labels = write_scene(root / "scene.tif"), write_labels(root / "labels.gpkg")
    return {"root": root, "base": base, "adapter": adapter, "copy": copy, "scene": scene, "labels": labels}


def _raw_config(ck: dict[str, Path], model: str, out: Path, *, lora: bool, steps: int = 2) -> dict[str, Any]:
    return {
        "model": model, "output_dir": str(out),
        "data": {"raster": [str(ck["scene"])], "labels": str(ck["labels"]), "chip_size": 8, "image_size": 28,
                 "samples_per_class": 12, "val_per_class": 6, "block_size": 24, "buffer": 4},
        "train": {"steps": steps, "batch_size": 8, "chunk_size": 8, "lr": 5e-3, "checkpoint_every": 1000},
        "lora": {"enabled": lora, "r": 4},
        "eval": {"before": False, "after": False},
    }


def _probe() -> list[EmbedInput]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)
    return [EmbedInput("Represent the given image.", image=image),
            EmbedInput("Find me an overhead satellite image that matches the given caption:", text="forest"),
            EmbedInput("Represent the region {bbox} of the given image.", image=image, bbox=(2, 3, 20, 18))]


class RecordingTrainer(Trainer):
    """Embeds a probe when the model is loaded and when the final model is saved."""

    at_load: np.ndarray
    trained: np.ndarray
    start_weights: dict[str, torch.Tensor]

    def _setup_model(self, embedder: Any, resume_dir: Path | None) -> torch.nn.Module:
        self.at_load = embedder.encode(_probe())
        self.start_weights = {k: v.detach().clone() for k, v in embedder.model.state_dict().items()}
        return super()._setup_model(embedder, resume_dir)

    def _save_model(self, embedder: Any, directory: Path) -> None:
        super()._save_model(embedder, directory)
        if directory.name == "model":
            self.trained = embedder.encode(_probe())


@pytest.mark.parametrize("layout,lora", [("adapter", False), ("copy", True)])
def test_train_from_the_preset_layout(preset_ckpt: dict[str, Path], tmp_path: Path, layout: str, lora: bool) -> None:
    ck = preset_ckpt
    cfg = Config.from_dict(_raw_config(ck, str(ck[layout]), tmp_path / "run", lora=lora))
    trainer = RecordingTrainer(cfg, progress=False)
    report = trainer.run()
    probe = _probe()
    # training started from base + the preset's adapter, merged: not from the bare base
    merged = load_embedder(str(ck["adapter"]), device="cpu", dtype="fp32", image_size=28).encode(probe)
    bare = load_embedder(str(ck["base"]), device="cpu", dtype="fp32", image_size=28).encode(probe)
    assert np.abs(trainer.at_load - merged).max() <= TOL
    assert np.abs(trainer.at_load - bare).max() > 1e-3
    # training changed the model, and the saved folder (merged weights + geovec.json) is that model
    assert np.abs(trainer.trained - trainer.at_load).max() > 1e-4
    model_dir = Path(report["model_dir"])
    meta = json.loads((model_dir / "geovec.json").read_text())
    assert meta["preset"] == PRESET and "adapter" not in meta and meta["image"]["size"] == 28
    assert not (model_dir / "adapter_config.json").exists()
    again = load_embedder(str(model_dir), device="cpu", dtype="fp32")  # no image size given: the saved one
    assert again.preset.name == PRESET and again.preset.image.size == 28
    assert np.abs(again.encode(probe) - trainer.trained).max() <= TOL
    saved = again.model.state_dict()
    assert not any("lora_" in k for k in saved) and saved.keys() == trainer.start_weights.keys()
    vision = [k for k in saved if k.startswith("model.visual.") and k.endswith("weight")]
    changed = [k for k in vision if not torch.equal(saved[k], trainer.start_weights[k])]
    if lora:  # LoRA on the decoder's projections: the vision tower is untouched, the adapter kept beside
        assert not changed and (model_dir / "adapter" / "adapter_config.json").exists()
    else:  # full fine-tuning trains every weight, the vision tower's too
        assert len(changed) == len(vision) > 0


def _hf_cache(root: Path, repo: str, folder: Path) -> None:
    """``folder`` as the cached snapshot of hub repo ``repo`` (the layout huggingface_hub reads offline)."""
    entry = root / "hub" / f"models--{repo.replace('/', '--')}"
    sha = "0" * 40
    shutil.copytree(folder, entry / "snapshots" / sha)
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(sha)


@pytest.mark.slow
def test_cli_train_preset_name_then_index_and_search(preset_ckpt: dict[str, Path], tmp_path: Path) -> None:
    """`geovec train --model vlm2vec-qwen2vl-2b` (offline cache), then index + search with the result."""
    from geovec.backend.model.presets import PRESETS

    ck = preset_ckpt
    hf = tmp_path / "hf"
    _hf_cache(hf, PRESETS[PRESET].base_model, ck["base"])
    _hf_cache(hf, str(PRESETS[PRESET].adapter), ck["adapter"])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_raw_config(ck, "tiny", tmp_path / "run", lora=True)))
    env = {**os.environ, "HF_HOME": str(hf), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "geovec.backend", "train", "--config", str(tmp_path / "c.yaml"),
                           "--model", PRESET, "--no-progress", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["base_model"] == PRESET
    model_dir = Path(report["model_dir"])
    tuned = load_embedder(str(model_dir), device="cpu", dtype="fp32")
    merged = load_embedder(str(ck["adapter"]), device="cpu", dtype="fp32", image_size=28)
    assert tuned.preset.name == PRESET and np.abs(tuned.encode(_probe()) - merged.encode(_probe())).max() > 1e-4

    from geovec.backend.cli import main

    folder = tmp_path / "scenes"
    folder.mkdir()
    shutil.copy(ck["scene"], folder / "scene.tif")
    idx = tmp_path / "idx"
    assert main(["index", str(folder), "--index", str(idx), "--model", str(model_dir), "--tile-size", "32",
                 "--no-progress"]) == 0
    info = json.loads((idx / "index.json").read_text())
    assert info["count"] == 9 and info["checkpoint"] == tuned.checkpoint_id and info["preset"] == PRESET
    assert info["model"]["image"]["size"] == 28  # the trained image size, read from the model's geovec.json
    out = tmp_path / "hits.geojson"
    assert main(["search", "--index", str(idx), "--text", "forest", "--k", "3", "--geojson", str(out)]) == 0
    assert [h["properties"]["rank"] for h in json.loads(out.read_text())["features"]] == [1, 2, 3]
