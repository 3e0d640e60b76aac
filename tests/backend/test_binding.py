"""An index is bound to its model: another model is refused (CLI, service, server) unless forced."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from geovec.backend.demo import write_sample_folder
from geovec.backend.errors import ModelMismatchError
from geovec.backend.indexing import index_folder
from geovec.backend.model.embedder import load_embedder
from geovec.backend.model.tiny import write_tiny_model
from geovec.backend.schemas import SearchRequest
from geovec.backend.service import run_search
from geovec.backend.types import TilingParams
from tests.backend.serverproc import ServerProc

PARAMS = TilingParams(tile_size=32)


def geovec(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "GEOVEC_TOKEN_FILE": "/nonexistent/geovec-server.json", **(env or {})}
    return subprocess.run([sys.executable, "-m", "geovec.backend", *args], capture_output=True, text=True,
                          timeout=600, env=e)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    root = tmp_path_factory.mktemp("binding")
    other = write_tiny_model(root / "other", seed=5)  # same architecture and dim, other weights
    folder = write_sample_folder(root / "rasters", size=64)
    idx = root / "idx"
    emb = load_embedder(str(tiny_model_dir), device="cpu")
    assert index_folder(folder, idx, emb, params=PARAMS).tiles == 12
    return {"root": root, "a": tiny_model_dir, "b": other, "folder": folder, "idx": idx, "emb": emb}


def test_sidecar_records_the_model_identity(two) -> None:
    meta = json.loads((two["idx"] / "index.json").read_text())
    model = meta["model"]
    assert model["preset"] == "tiny" and model["fingerprint"] == two["emb"].fingerprint
    assert model["dtype"] == "fp32" and model["image"]["size"] == 56 and len(model["fingerprint"]) == 16


def test_service_refuses_another_model_unless_forced(two) -> None:
    other = load_embedder(str(two["b"]), device="cpu")
    assert other.dim == two["emb"].dim and other.fingerprint != two["emb"].fingerprint
    req = SearchRequest(index=str(two["idx"]), text="water", k=3)
    with pytest.raises(ModelMismatchError) as e:
        run_search(req, other)
    assert str(two["a"]) in str(e.value) and str(two["b"]) in str(e.value) and "--force" in str(e.value)
    assert len(run_search(req.model_copy(update={"force": True}), other).features) == 3


def test_a_copy_of_the_same_weights_is_the_same_model(two) -> None:
    copy = shutil.copytree(two["a"], two["root"] / "copy-of-a")
    emb = load_embedder(str(copy), device="cpu")
    assert emb.checkpoint_id != two["emb"].checkpoint_id and emb.fingerprint == two["emb"].fingerprint
    assert len(run_search(SearchRequest(index=str(two["idx"]), text="water", k=2), emb).features) == 2


def test_cli_search_and_reindex_with_another_model(two) -> None:
    r = geovec("search", "--index", str(two["idx"]), "--text", "water", "--model", str(two["b"]))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "was built with" in lines[0] and "--force" in lines[0], r.stderr
    r = geovec("search", "--index", str(two["idx"]), "--text", "water", "--model", str(two["b"]), "--force", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["features"]) == 10
    r = geovec("index", str(two["folder"]), "--index", str(two["idx"]), "--model", str(two["b"]))
    assert r.returncode == 1 and "was built with" in r.stderr, r.stderr


def test_image_size_is_recorded_and_used_for_queries(two) -> None:
    idx = two["root"] / "idx-112"
    r = geovec("index", str(two["folder"]), "--index", str(idx), "--model", str(two["a"]), "--tile-size", "32",
               "--image-size", "112", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((idx / "index.json").read_text())["model"]["image"]["size"] == 112
    from geovec.backend.service import model_for_index

    assert model_for_index(idx, device="cpu").preset.image.size == 112
    # querying with the 56 px embedder gives the same hits as the 112 px one: it is resized to the index's size
    a = run_search(SearchRequest(index=str(idx), text="water", k=3), two["emb"])
    assert a.features[0].properties["score"] > 0
    r = geovec("index", str(two["folder"]), "--index", str(idx), "--image-size", "224")
    assert r.returncode == 2 and "embeds images at 112 px" in r.stderr, r.stderr


def test_server_with_another_model_refuses(two, tmp_path) -> None:
    srv = ServerProc(tmp_path / "srv", model=two["b"], roots=[two["root"]]).start()
    try:
        with srv.client() as c:
            r = c.post("/v1/search", json={"index": str(two["idx"]), "text": "water", "k": 2})
            assert r.status_code == 409 and r.json()["error"] == "model_mismatch", r.text
            r = c.post("/v1/search", json={"index": str(two["idx"]), "text": "water", "k": 2, "force": True})
            assert r.status_code == 200 and len(r.json()["features"]) == 2
    finally:
        srv.stop()


def test_cli_search_reuses_a_running_server(two, tmp_path) -> None:
    srv = ServerProc(tmp_path / "srv", model=two["a"], roots=[two["root"]]).start()
    try:
        env = {"GEOVEC_TOKEN_FILE": str(srv.token_file)}
        r = geovec("-v", "search", "--index", str(two["idx"]), "--text", "water", "--k", "2", "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert "answered by the running backend" in r.stderr and len(json.loads(r.stdout)["features"]) == 2
        r = geovec("-v", "search", "--index", str(two["idx"]), "--text", "water", "--k", "2", "--local", env=env)
        assert r.returncode == 0 and "answered by the running backend" not in r.stderr
    finally:
        srv.stop()
