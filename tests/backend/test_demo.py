"""``make demo``'s model choice: a typo stops with the reason; only the unreachable default falls back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "geovec.backend.demo", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


@pytest.mark.parametrize(("model", "reason"), [("vlm2vec-qwen2vl-2bb", "vlm2vec-qwen2vl-2bb"),
                                               ("./no/such/checkpoint", "is not a checkpoint"),
                                               ("someone/no-such-model", "cannot load model")])
def test_a_model_that_does_not_load_stops_the_demo(tmp_path: Path, model: str, reason: str) -> None:
    proc = _demo(tmp_path, "--model", model, "--dir", str(tmp_path / "empty"))
    assert proc.returncode == 1, proc.stderr
    assert reason in proc.stderr and "TINY RANDOM" not in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_unreachable_default_model_falls_back_to_tiny(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--tile-size", "128")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TINY RANDOM" in proc.stderr and "unreachable" in proc.stderr
    assert 'text "water"' in proc.stdout
