"""Corpora of corrupt index files and bad rasters: each a clear GeoVecError (or a per-file error), never a crash.

The corrupt-index cases are opened in a child process, so a crash (a segfault in
hnswlib) would show as a failed case instead of taking the test run down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.demo import write_geotiff, write_sample_folder, write_scene
from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams

PARAMS = TilingParams(tile_size=32)

OPEN_ALL = r'''
import json, sys
from pathlib import Path
from geovec.backend.errors import GeoVecError
from geovec.backend.index.store import IndexStore
from geovec.backend.index.verify import verify_index
from geovec.backend.service import index_info
import numpy as np
out = {}
for case in sys.argv[1:]:
    got = []
    for name, fn in (("open", lambda p: IndexStore.open(p).close()), ("info", index_info),
                     ("verify", lambda p: verify_index(p).ok),
                     ("search", lambda p: (lambda s: (s.search(np.ones((1, s.dim), np.float32), k=5), s.close()))(IndexStore.open(p)))):
        try:
            fn(Path(case))
            got.append([name, "ok", ""])
        except GeoVecError as e:
            got.append([name, type(e).__name__, str(e)[:300]])
        except Exception as e:
            got.append([name, "CRASH " + type(e).__name__, str(e)[:300]])
    out[case] = got
print(json.dumps(out))
'''


def _truncate(name: str, frac: float) -> Callable[[Path], None]:
    def f(p: Path) -> None:
        size = (p / name).stat().st_size
        with open(p / name, "r+b") as fh:
            fh.truncate(int(size * frac))
    return f


def _flip(name: str, offset: int) -> Callable[[Path], None]:
    def f(p: Path) -> None:
        with open(p / name, "r+b") as fh:
            fh.seek(offset if offset >= 0 else (p / name).stat().st_size + offset)
            b = fh.read(1)
            fh.seek(-1, 1)
            fh.write(bytes([b[0] ^ 0xFF]))
    return f


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda p: (p / name).write_bytes(data)


def _sidecar(**changes: object) -> Callable[[Path], None]:
    def f(p: Path) -> None:
        meta = json.loads((p / "index.json").read_text())
        meta.update(changes)
        (p / "index.json").write_text(json.dumps(meta))
    return f


def _sql(statement: str) -> Callable[[Path], None]:
    def f(p: Path) -> None:
        import sqlite3

        with sqlite3.connect(p / "meta.sqlite") as con:
            con.execute(statement)
    return f


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "hnsw truncated 0%": _truncate("vectors.hnsw", 0.0),
    "hnsw truncated 50%": _truncate("vectors.hnsw", 0.5),
    "hnsw truncated 99%": _truncate("vectors.hnsw", 0.99),
    "hnsw header flipped": _flip("vectors.hnsw", 8),
    "hnsw tail flipped": _flip("vectors.hnsw", -3),
    "hnsw missing": lambda p: (p / "vectors.hnsw").unlink(),
    "sidecar empty": _write("index.json", b""),
    "sidecar not json": _write("index.json", b"{not json"),
    "sidecar nested": _write("index.json", b"[" * 50_000 + b"]" * 50_000),
    "sidecar not utf-8": _write("index.json", b"\xff\xfe{}"),
    "sidecar wrong types": _sidecar(dim="64", count=-5),
    "sidecar wrong sha": _sidecar(hnsw_sha256="0" * 64),
    "sidecar huge dim": _sidecar(dim=1 << 30),
    "sidecar missing": lambda p: (p / "index.json").unlink(),
    "sqlite zero bytes": _write("meta.sqlite", b""),
    "sqlite truncated": _truncate("meta.sqlite", 0.3),
    "sqlite garbage": _write("meta.sqlite", os.urandom(8192)),
    "sqlite missing": lambda p: (p / "meta.sqlite").unlink(),
    "sqlite bad json row": _sql("UPDATE scenes SET stretch = '{oops'"),
    "sqlite bad vector blob": _sql("UPDATE tiles SET vector = x'00'"),
    "sqlite info mismatch": _sql("UPDATE info SET value = '32' WHERE key = 'dim'"),
}


@pytest.fixture(scope="module")
def good_index(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    folder = write_sample_folder(root / "rasters", size=64)
    index_folder(folder, root / "idx", tiny_embedder, params=PARAMS)
    return root / "idx"


def test_corrupt_index_corpus(good_index: Path, tmp_path: Path, matrix) -> None:
    cases = {}
    for name, damage in CORRUPTIONS.items():
        d = tmp_path / name.replace(" ", "_").replace("%", "pct")
        shutil.copytree(good_index, d)
        damage(d)
        cases[str(d)] = name
    r = subprocess.run([sys.executable, "-c", OPEN_ALL, *cases], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout)
    bad = []
    for path, name in cases.items():
        outcomes = results[path]
        crashed = [o for o in outcomes if o[1].startswith("CRASH")]
        vague = [o for o in outcomes if o[1] not in ("ok", "CRASH") and "index" not in o[2].lower()
                 and "meta.sqlite" not in o[2] and "vectors.hnsw" not in o[2]]
        outcome = "ok" if not crashed and not vague else f"{(crashed or vague)[0][:2]}"
        matrix.add("corrupt index files", name, outcome)
        if outcome != "ok":
            bad.append((name, crashed or vague))
    assert not bad, bad


def _bad_rasters(d: Path) -> dict[str, str]:
    """Bad rasters next to one good one; name -> the one outcome it must have.

    ``error``: a per-file error, nothing indexed from it; ``skipped``: read without error, every
    window below ``min_valid_fraction`` so no tile stored; ``indexed``: tiles stored.
    """
    d.mkdir(parents=True)
    write_scene(d / "good.tif", "water", size=64, seed=1)
    (d / "empty.tif").write_bytes(b"")
    (d / "text.tif").write_text("not a raster")
    cut = write_scene(d / "cut.tif", "forest", size=256, seed=2)
    with open(cut, "r+b") as f:
        f.truncate(cut.stat().st_size // 2)
    write_geotiff(d / "no_crs.tif", np.full((3, 64, 64), 7, np.uint8), crs=None)
    write_geotiff(d / "nan.tif", np.full((1, 64, 64), np.nan, np.float32))
    write_geotiff(d / "all_nodata.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    write_geotiff(d / "one_pixel.tif", np.full((3, 1, 1), 9, np.uint8))
    (d / "missing_source.vrt").write_text('<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand '
                                          'dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="1">'
                                          'gone.tif</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>')
    (d / "loop.vrt").write_text('<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand dataType="Byte" '
                                'band="1"><SimpleSource><SourceFilename relativeToVRT="1">loop.vrt</SourceFilename>'
                                '</SimpleSource></VRTRasterBand></VRTDataset>')
    (d / "dangling.tif").symlink_to(d / "nowhere.tif")
    shutil.copy(d / "good.tif", os.fsencode(d) + b"/caf\xe9.tif")
    # one_pixel.tif: one valid pixel in a 32-pixel window is 1/1024 valid, under min_valid_fraction
    return {"good.tif": "indexed", "empty.tif": "error", "text.tif": "error", "cut.tif": "error",
            "no_crs.tif": "error", "nan.tif": "skipped", "all_nodata.tif": "skipped", "one_pixel.tif": "skipped",
            "missing_source.vrt": "error", "loop.vrt": "error", "dangling.tif": "error", "caf\\xe9.tif": "error"}


def _tiles_per_file(idx: Path) -> dict[str, int]:
    """Stored tiles of every file the index names (0 for a scene read but with no tile kept)."""
    import sqlite3

    with sqlite3.connect(idx / "meta.sqlite") as con:
        rows = con.execute("SELECT p.path, COUNT(t.label) FROM scene_paths p LEFT JOIN tiles t "
                           "ON t.scene_id = p.scene_id GROUP BY p.path").fetchall()
    return {Path(path).name: n for path, n in rows}


def test_bad_raster_corpus(tmp_path: Path, tiny_embedder, matrix) -> None:
    folder = tmp_path / "bad"
    expected = _bad_rasters(folder)
    s = index_folder(folder, tmp_path / "idx", tiny_embedder, params=PARAMS)
    errors = {Path(p).name: e for err in s.errors for p in err.path.split(",") for e in [err.error]}
    tiles = _tiles_per_file(tmp_path / "idx")
    failures = []
    for name, want in expected.items():
        if name in errors:
            got = "error" if not tiles.get(name) else f"error and {tiles[name]} tiles"
        elif name in tiles:
            got = "indexed" if tiles[name] else "skipped"
        else:
            got = "neither indexed nor reported"  # a silent skip
        ok = got == want
        if ok and got == "error" and ("Traceback" in errors[name] or "See previous exception" in errors[name]):
            ok = False
        matrix.add("bad rasters", f"{name} {want}", "ok" if ok else f"{got}: {errors.get(name, '')[:60]}")
        if not ok:
            failures.append((name, want, got, errors.get(name)))
    assert not failures, failures
    assert s.tiles == tiles["good.tif"] == 4  # the good raster's 2 x 2 tiles, nothing from the others
