"""A re-index never deletes what it could not see: unreadable folders, dangling links, symlink loops."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from geovec.backend.demo import write_scene
from geovec.backend.raster.scan import scan_folder
from geovec.backend.raster.walk import walk_rasters

NOBODY = 65534


def _scenes(index: Path) -> set[str]:
    with sqlite3.connect(index / "meta.sqlite") as con:
        return {r[0] for r in con.execute("SELECT name FROM scenes")}


def _tiles(index: Path) -> int:
    with sqlite3.connect(index / "meta.sqlite") as con:
        return int(con.execute("SELECT COUNT(*) FROM tiles").fetchone()[0])


@pytest.fixture()
def shared_tmp() -> Iterator[Path]:
    """A temp folder another user can enter (pytest's tmp_path is 0700 under root)."""
    d = Path(tempfile.mkdtemp(prefix="geovec-nonroot-"))
    d.chmod(0o755)
    yield d
    for root, dirs, _ in os.walk(d):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(d, ignore_errors=True)


def _as_user(cmd: list[str]) -> list[str]:
    """``cmd`` run as an unprivileged user: root drops to nobody (chmod 000 would not stop root)."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]


def test_reindex_as_non_root_keeps_scenes_of_an_unreadable_folder(shared_tmp: Path) -> None:
    from geovec.backend.model.tiny import write_tiny_model

    model = write_tiny_model(shared_tmp / "model")
    data, index = shared_tmp / "data", shared_tmp / "idx"
    write_scene(data / "open" / "water.tif", "water", size=64, seed=1)
    write_scene(data / "locked" / "forest.tif", "forest", size=64, seed=2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HOME": str(shared_tmp),
           "HF_HOME": str(shared_tmp / "hf"), "XDG_CACHE_HOME": str(shared_tmp / "cache")}
    base = [sys.executable, "-m", "geovec.backend", "index", str(data), "--index", str(index), "--tile-size", "32",
            "--no-progress", "--json"]
    first = subprocess.run(base + ["--model", str(model)], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert _scenes(index) == {"water", "forest"}
    tiles = _tiles(index)
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(shared_tmp):
            for name in dirs + files:
                os.chown(os.path.join(root, name), NOBODY, NOBODY)
        os.chown(shared_tmp, NOBODY, NOBODY)
    (data / "locked").chmod(0o000)

    again = subprocess.run(_as_user(base), capture_output=True, text=True, env=env, timeout=300)
    (data / "locked").chmod(0o755)
    summary = json.loads(again.stdout)
    assert summary["scenes_removed"] == 0, again.stdout
    assert _scenes(index) == {"water", "forest"} and _tiles(index) == tiles
    errors = {e["path"]: e["error"] for e in summary["errors"]}
    assert str((data / "locked").resolve()) in errors, summary["errors"]
    assert "cannot be listed" in errors[str((data / "locked").resolve())]
    assert again.returncode == 1 and "locked" in again.stderr  # reported, not silent


def test_dangling_links_and_loops_are_reported_not_skipped(tmp_path: Path) -> None:
    d = tmp_path / "rasters"
    write_scene(d / "a" / "water.tif", "water", size=64, seed=1)
    (d / "gone.tif").symlink_to(d / "nowhere.tif")
    (d / "self.tif").symlink_to(d / "self.tif")
    (d / "a" / "up").symlink_to(d)  # a folder linking back to its parent: a loop
    (d / "b").symlink_to(d / "a")  # a second way to the same folder: walked once
    walk = walk_rasters(d)
    assert [p.name for p in walk.files] == ["water.tif"]
    errors = dict(walk.errors)
    assert "dangling symlink" in errors[str(d / "gone.tif")]
    assert "symlink loop" in errors[str(d / "self.tif")]
    assert "symlink loop" in errors[str(d / "a" / "up")]
    scan = scan_folder(d)
    assert [s.name for s in scan.scenes] == ["water"]
    assert {p for p, _ in scan.errors} >= {str(d / "gone.tif"), str(d / "self.tif")}


def test_regrouped_band_files_still_replace_their_old_scene(tmp_path: Path, tiny_embedder) -> None:
    """Files still present but regrouped (a band added) are not 'unreadable': the old stack is replaced."""
    import numpy as np

    from geovec.backend.demo import write_geotiff
    from geovec.backend.indexing import index_folder
    from geovec.backend.types import TilingParams

    d = tmp_path / "bands"
    rng = np.random.default_rng(0)
    for b in (1, 2):
        write_geotiff(d / f"scene_B{b}.tif", rng.integers(0, 255, (1, 64, 64), dtype=np.uint8))
    params = TilingParams(tile_size=32)
    index_folder(d, tmp_path / "idx", tiny_embedder, params=params)
    write_geotiff(d / "scene_B3.tif", rng.integers(0, 255, (1, 64, 64), dtype=np.uint8))
    s = index_folder(d, tmp_path / "idx", tiny_embedder, params=params)
    assert s.scenes_removed == 1 and s.scenes == 1
    with sqlite3.connect(tmp_path / "idx" / "meta.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM scenes").fetchone()[0] == 1
