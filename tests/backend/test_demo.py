"""``make demo``'s model choice: a typo stops with the reason; only the unreachable default falls back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "1"}


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geovec.backend.demo", *args], capture_output=True, text=True,
                          cwd=ROOT, env=_env(tmp_path), timeout=600)


BAD_MODELS = [("vlm2vec-qwen2vl-2bb", "vlm2vec-qwen2vl-2bb"), ("./no/such/checkpoint", "is not a checkpoint"),
              ("someone/no-such-model", "cannot load model")]


def test_a_model_that_does_not_load_stops_the_demo(tmp_path: Path) -> None:
    # the three demos at once (most of their time is starting Python), each checked on its own
    procs = {model: subprocess.Popen([sys.executable, "-m", "geovec.backend.demo", "--model", model, "--dir",
                                      str(tmp_path / f"empty{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=ROOT, env=_env(tmp_path / str(i)))
             for i, (model, _) in enumerate(BAD_MODELS)}
    for model, reason in BAD_MODELS:
        _, err = procs[model].communicate(timeout=600)
        assert procs[model].returncode == 1, (model, err)
        assert reason in err and "TINY RANDOM" not in err, (model, err)
        assert "Traceback" not in err, (model, err)


@pytest.mark.slow
def test_unreachable_default_model_falls_back_to_tiny(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--tile-size", "128")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TINY RANDOM" in proc.stderr and "unreachable" in proc.stderr
    assert 'text "water"' in proc.stdout
