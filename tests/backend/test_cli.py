"""The ``geovec`` CLI: good paths, one-line errors on bad input, SIGKILL mid-run then resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.cli import main
from geovec.backend.demo import write_geotiff, write_sample_folder, write_scene
from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams

TILE = 32


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "GEOVEC_TOKEN_FILE": "/nonexistent/geovec-server.json"}


def geovec(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m geovec.backend ARGS`` as a real subprocess."""
    return subprocess.run([sys.executable, "-m", "geovec.backend", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_embedder, tiny_model_dir: Path):
    """A sample folder indexed with the tiny model, plus broken rasters next to it (not indexed)."""
    root = tmp_path_factory.mktemp("cli")
    folder = write_sample_folder(root / "rasters", size=64)
    idx = root / "idx"
    s = index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE))
    assert s.tiles == 12
    bad = root / "bad"
    bad.mkdir()
    (bad / "not_a_raster.tif").write_text("hello")
    write_geotiff(bad / "no_crs.tif", np.full((3, 64, 64), 9, dtype="uint8"), crs=None)
    from geovec.backend.index.store import IndexStore

    store = IndexStore.open(idx)
    scene, _ = store.scene_for_path(folder / "lake_utm17n.tif")  # type: ignore[misc]
    store.close()
    return {"root": root, "folder": folder, "idx": idx, "bad": bad, "scene": scene, "model": tiny_model_dir}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("geovec: error: ")
    return lines[0]


def test_info_and_search_outputs(env, capsys, tmp_path: Path) -> None:
    code, out, err = _run(capsys, "info", "--index", str(env["idx"]), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["count"], info["scenes"], info["tiling"]["tile_size"]) == (12, 3, TILE)
    code, out, _ = _run(capsys, "info", "--index", str(env["idx"]))
    assert code == 0 and "tiles      12" in out

    gj = tmp_path / "hits.geojson"
    code, out, err = _run(capsys, "search", "--index", str(env["idx"]), "--text", "water", "--k", "4",
                          "--json", "--geojson", str(gj))
    assert code == 0, err
    resp = json.loads(out)
    assert resp["type"] == "FeatureCollection" and len(resp["features"]) == 4
    assert json.loads(gj.read_text())["features"] == resp["features"]

    s = env["scene"]
    x0, y0 = s.transform[2], s.transform[5]
    code, out, err = _run(capsys, "search", "--index", str(env["idx"]), "--box", str(x0 + 100), str(y0 - 300),
                          str(x0 + 300), str(y0 - 100), "--crs", "EPSG:32617", "--k", "3", "--out-crs", "EPSG:32617")
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 3 and lines[0].lstrip().startswith("1 ")
    code, out, err = _run(capsys, "search", "--index", str(env["idx"]), "--point", str(x0 + 200), str(y0 - 200),
                          "--crs", "EPSG:32617", "--latlon", "29.8", "-80.0", "--include-overlapping", "--json")
    assert code == 0, err
    assert json.loads(out)["query"]["latlon"] == [29.8, -80.0]


def _bad_cases(env) -> list[tuple[list[str], int, str]]:
    s, idx = env["scene"], str(env["idx"])
    x0, y0 = s.transform[2], s.transform[5]
    box_in = [str(x0 + 100), str(y0 - 300), str(x0 + 300), str(y0 - 100)]
    inverted = [box_in[2], box_in[1], box_in[0], box_in[3]]
    srch = ["search", "--index", idx]
    return [
        (["search", "--index", str(env["root"] / "nope"), "--text", "water"], 1, "no index"),
        (["info", "--index", str(env["root"] / "nope")], 1, "no index"),
        ([*srch, "--text", ""], 2, "text"),
        ([*srch, "--text", "   "], 2, "text"),
        ([*srch, "--box", "1", "2", "3"], 2, ""),
        ([*srch, "--box", *inverted, "--crs", "EPSG:32617"], 1, ""),
        ([*srch, "--box", "0", "0", "10", "10", "--crs", "EPSG:32617"], 1, "outside"),
        ([*srch, "--point", "0", "0", "--crs", "EPSG:4326"], 1, "outside"),
        ([*srch, "--text", "water", "--latlon", "nan", "0"], 2, "nan"),
        ([*srch, "--text", "water", "--latlon", "95", "0"], 2, "latlon"),
        ([*srch, "--text", "water", "--latlon", "10", "181"], 2, "latlon"),
        ([*srch, "--point", "1", "2"], 2, "--crs"),
        ([*srch, "--box", *box_in, "--crs", "EPSG:999999"], 1, ""),
        ([*srch, "--box", *box_in, "--crs", "EPSG:32617", "--raster", str(env["bad"] / "not_a_raster.tif")], 1, ""),
        ([*srch, "--box", *box_in, "--crs", "EPSG:32617", "--raster", str(env["bad"] / "no_crs.tif")], 1, ""),
        ([*srch, "--text", "water", "--k", "0"], 2, "k"),
        ([*srch, "--text", "water", "--out-crs", "nonsense"], 1, ""),
        ([*srch], 2, ""),
        (["index", str(env["root"] / "missing"), "--index", str(env["root"] / "i2"), "--model", str(env["model"])], 1,
         "missing"),
        (["index", str(env["folder"]), "--index", str(env["root"] / "i3")], 2, "--model"),
        (["index", str(env["folder"]), "--index", str(env["root"] / "i4"), "--model", str(env["model"]),
          "--overlap", "0.95"], 2, "overlap"),
        (["bogus"], 2, ""),
    ]


def test_bad_input_exits_nonzero_with_one_line(env, capsys) -> None:
    for argv, want, needle in _bad_cases(env):
        code, out, err = _run(capsys, *argv)
        assert code == want, (argv, code, err)
        line = _one_line_error(err)
        assert needle.lower() in line.lower(), (argv, line)


def test_per_file_errors_reported_and_rest_indexed(env, capsys, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(env["bad"], folder)
    write_scene(folder / "ok.tif", "forest", size=64)
    code, out, err = _run(capsys, "index", str(folder), "--index", str(tmp_path / "i"), "--model", str(env["model"]),
                          "--tile-size", str(TILE), "--no-progress")
    assert code == 1
    line = _one_line_error(err)
    assert "2 file(s)" in line
    assert "not_a_raster.tif" in out and "no_crs.tif" in out and "4 tile(s) embedded" in out


def test_corrupted_index_is_a_clear_error(env, capsys, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt"
    shutil.copytree(env["idx"], bad)
    hnsw = bad / "vectors.hnsw"
    hnsw.write_bytes(hnsw.read_bytes()[: hnsw.stat().st_size // 3])
    for argv in (["info", "--index", str(bad)], ["search", "--index", str(bad), "--text", "water"]):
        code, _, err = _run(capsys, *argv)
        assert code == 1
        _one_line_error(err)
    (bad / "index.json").write_text("{not json")
    code, _, err = _run(capsys, "info", "--index", str(bad))
    assert code == 1 and "index" in _one_line_error(err).lower()


def test_repair_flag_rebuilds_a_corrupted_index(env, capsys, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt"
    shutil.copytree(env["idx"], bad)
    hnsw = bad / "vectors.hnsw"
    hnsw.write_bytes(hnsw.read_bytes()[: hnsw.stat().st_size // 2])
    code, _, err = _run(capsys, "info", "--index", str(bad))
    assert code == 1 and "--repair" in _one_line_error(err)
    code, out, err = _run(capsys, "index", str(env["folder"]), "--index", str(bad), "--repair", "--no-progress",
                          "--json")  # no --tile-size: an existing index keeps its own tiling
    assert code == 0, err
    assert json.loads(out)["tiles"] == 0  # nothing re-embedded: the vectors came back from SQLite
    code, out, _ = _run(capsys, "info", "--index", str(bad), "--json")
    assert code == 0 and json.loads(out)["count"] == 12


def test_subprocess_errors_are_one_line(env) -> None:
    r = geovec("search", "--index", str(env["root"] / "nope"), "--text", "water")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("geovec: error: no index") and len(r.stderr.strip().splitlines()) == 1
    r = geovec("search", "--index", str(env["idx"]), "--text", "water", "--latlon", "nan", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def _count(idx: Path) -> int:
    try:
        with sqlite3.connect(f"file:{idx / 'meta.sqlite'}?mode=ro", uri=True, timeout=1) as con:
            return int(con.execute("SELECT COUNT(*) FROM tiles").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_clean_run(env, tiny_embedder, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "big"
    for i, kind in enumerate(("water", "forest", "urban", "mixed")):
        write_scene(folder / f"s{i}.tif", kind, size=192, seed=i, origin=(400000.0 + 5000 * i, 3300000.0))
    params = TilingParams(tile_size=16)
    total = 4 * (192 // 16) ** 2
    clean = index_folder(folder, tmp_path / "clean", tiny_embedder, params=params, batch_size=8)
    assert clean.tiles == total

    idx = tmp_path / "killed"
    cmd = [sys.executable, "-m", "geovec.backend", "index", str(folder), "--index", str(idx), "--model",
           str(env["model"]), "--tile-size", "16", "--batch-size", "4", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 240
    while _count(idx) < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    at_kill = _count(idx)
    assert 0 < at_kill < total, f"kill came too late/early ({at_kill} of {total}); stderr: {proc.stderr.read()}"

    code, out, err = _run(capsys, "index", str(folder), "--index", str(idx), "--model", str(env["model"]),
                          "--tile-size", "16", "--no-progress", "--json")
    assert code == 0, err
    assert json.loads(out)["tiles"] == total - at_kill
    with sqlite3.connect(idx / "meta.sqlite") as con:
        ids = [r[0] for r in con.execute("SELECT tile_id FROM tiles")]
    with sqlite3.connect(tmp_path / "clean" / "meta.sqlite") as con:
        clean_ids = {r[0] for r in con.execute("SELECT tile_id FROM tiles")}
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == clean_ids
    code, out, _ = _run(capsys, "info", "--index", str(idx), "--json")
    assert code == 0 and json.loads(out)["count"] == total


def test_sigint_cancels_cleanly(env, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    for i in range(3):
        write_scene(folder / f"s{i}.tif", "urban", size=192, seed=i, origin=(400000.0 + 5000 * i, 3300000.0))
    idx = tmp_path / "idx"
    cmd = [sys.executable, "-m", "geovec.backend", "index", str(folder), "--index", str(idx), "--model",
           str(env["model"]), "--tile-size", "16", "--batch-size", "4", "--workers", "1", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 240
    while _count(idx) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert summary["cancelled"] is True and 0 < summary["tiles"] < 3 * 144
    assert _count(idx) == summary["tiles"]
