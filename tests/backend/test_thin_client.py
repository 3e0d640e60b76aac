"""The CLI path that talks to a running ``geovec serve`` is thin: it imports no torch, transformers,
rasterio or hnswlib (each command run in a fresh subprocess, its ``sys.modules`` checked afterwards)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams
from tests.backend.serverproc import ServerProc
from tests.backend.wfdata import CRS, TILE, tile_box, write_two_class_scene

HEAVY = ("torch", "transformers", "rasterio", "hnswlib")
PROBE = f"""
import json, sys
from geovec.backend.cli.main import main
rc = main(sys.argv[1:])
print("PROBE " + json.dumps({{"rc": rc, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_embedder):
    root = tmp_path_factory.mktemp("thin-client")
    (root / "rasters").mkdir()
    write_two_class_scene(root / "rasters")
    idx = root / "idx"
    index_folder(root / "rasters", idx, tiny_embedder, params=TilingParams(tile_size=TILE), batch_size=16)
    srv = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir]).start()
    yield {"root": root, "idx": idx, "srv": srv}
    assert srv.stop() == 0


def _probe(served, *argv: str) -> tuple[dict, str]:
    env = {**os.environ, "GEOVEC_TOKEN_FILE": str(served["srv"].token_file)}
    res = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env,
                         cwd=served["root"], timeout=300)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("PROBE ")]
    assert line, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(line[-1][6:]), res.stdout[: res.stdout.rindex("PROBE ")] + res.stderr


def test_commands_via_a_server_import_no_model_or_raster_libraries(served) -> None:
    idx = "idx"  # relative: the client makes it absolute for the server
    got, out = _probe(served, "search", "--index", idx, "--text", "water", "--k", "3", "--json", "--server")
    assert got == {"rc": 0, "heavy": []}, out
    tile = json.loads(out[out.index("{"):out.rindex("}") + 1])["features"][0]["properties"]["tile_id"]
    assert (served["root"] / "idx").is_dir()
    (served["root"] / "v.json").write_text(json.dumps({"vector": [0.1] * 64}))
    for argv in (["classify", "--index", idx, "--classes", "water", "town"],
                 ["refine", "--index", idx, "--text", "water", "--good", tile, "--k", "3"],
                 ["locate", "--index", idx, "--box", *map(str, tile_box(1, 1)), "--crs", CRS, "--k", "5"],
                 ["ask", "--index", idx, "--box", *map(str, tile_box(1, 1)), "--crs", CRS, "--question", "what?",
                  "--answers", "water", "town"],
                 ["search", "--index", idx, "--vector", "v.json", "--k", "3"]):
        got, out = _probe(served, *argv, "--server")
        assert got == {"rc": 0, "heavy": []}, (argv, out)
