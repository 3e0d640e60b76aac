"""Search on Ray shard actors (a local Ray): the same hits as in-process multi-index search, a SIGKILLed
shard flagged as missing and then back, a shard that cannot start in one line, a re-index reloading one shard."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.cli import main
from geovec.backend.cluster import RayShards
from geovec.backend.demo import write_sample_folder
from geovec.backend.errors import GeoVecError
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.schemas import SearchRequest
from geovec.backend.service import run_search
from geovec.backend.types import TilingParams

pytestmark = pytest.mark.slow

PARAMS = TilingParams(tile_size=32)
TEXTS = ("water", "dense city blocks", "a field")


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> dict[str, Path]:
    """Two sample scenes over two indexes ('a', 'b'; the third scene is added to 'b' by a test)."""
    root = tmp_path_factory.mktemp("cluster")
    folder = write_sample_folder(root / "rasters", size=128)
    files = sorted(folder.glob("*.tif"))
    for name, chosen in (("a", files[:1]), ("b", files[1:2])):
        (root / name).mkdir()
        for f in chosen:
            shutil.copy2(f, root / name / f.name)
        index_folder(root / name, root / f"idx_{name}", tiny_embedder, params=PARAMS)
    return {"root": root, "a": root / "idx_a", "b": root / "idx_b", "rasters": folder}


@pytest.fixture(scope="module")
def shards(ray_local: str):
    s = RayShards(call_timeout_s=20.0, recheck_s=0.2)
    try:
        yield s
    finally:
        s.close()


def _req(split: dict[str, Path], text: str, k: int = 6) -> SearchRequest:
    return SearchRequest(index=str(split["a"]), indexes=[str(split["b"])], text=text, k=k)


def _hits(resp) -> list[tuple[str, float, str]]:
    return [(f.properties["tile_id"], round(f.properties["score"], 5), f.properties["index"]) for f in resp.features]


def test_shards_answer_like_in_process_multi_index_search(split, shards, tiny_embedder) -> None:
    for text in TEXTS:
        here = run_search(_req(split, text), tiny_embedder)
        there = run_search(_req(split, text), tiny_embedder, index_set=shards)
        assert _hits(there) == _hits(here) and len(_hits(there)) == 6
        assert not there.partial and there.missing == []
        assert there.query["indexes"] == here.query["indexes"]
    store = IndexStore.open(split["b"])
    rec = store.search(np.ones(store.dim, np.float32), 1)[0][0][0]
    store.close()
    point = SearchRequest(index=str(split["a"]), indexes=[str(split["b"])], point=[rec.center_lon, rec.center_lat],
                          k=4)  # the query tile is found through the shards' scenes and read here
    here, there = run_search(point, tiny_embedder), run_search(point, tiny_embedder, index_set=shards)
    assert _hits(there) == _hits(here) and there.query["scene"] == here.query["scene"] and len(_hits(there)) == 4
    assert {Path(p) for p in shards.shards} == {split["a"].resolve(), split["b"].resolve()}
    assert all(s.pid != os.getpid() for s in shards.shards.values())  # the indexes live in the actors


def test_a_sigkilled_shard_is_flagged_missing_then_restarts_from_disk(split, shards, tiny_embedder) -> None:
    want = run_search(_req(split, "water", k=20), tiny_embedder, index_set=shards)
    b = shards.shard(split["b"])
    old_pid = b.pid
    os.kill(old_pid, signal.SIGKILL)
    partial = run_search(_req(split, "water", k=20), tiny_embedder, index_set=shards)
    assert partial.partial and partial.missing == [str(split["b"].resolve())]
    only_a = run_search(SearchRequest(index=str(split["a"]), text="water", k=20), tiny_embedder)
    assert [h[:2] for h in _hits(partial)] == [(f.properties["tile_id"], round(f.properties["score"], 5))
                                               for f in only_a.features]  # the live shard's hits, none lost
    deadline = time.monotonic() + 90
    while True:  # Ray restarts the actor, which reopens the index; until then answers stay flagged
        again = run_search(_req(split, "water", k=20), tiny_embedder, index_set=shards)
        if not again.partial:
            break
        assert again.missing == [str(split["b"].resolve())]
        assert time.monotonic() < deadline, "the killed shard did not come back"
        time.sleep(0.5)
    assert _hits(again) == _hits(want)
    assert b.pid != old_pid


def test_a_shard_that_cannot_start_is_one_line(split, shards, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(GeoVecError) as e:
        shards.shard(broken)
    assert str(broken) in str(e.value) and "cannot start" in str(e.value) and "\n" not in str(e.value)
    assert str(broken.resolve()) not in shards.shards
    rc = main(["search", "--index", str(split["a"]), "--index", str(broken), "--text", "water", "--engine", "ray",
               "--local"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "cannot start" in err and "Traceback" not in err


def test_reindexing_a_folder_reloads_only_its_shard(split, shards, tiny_embedder) -> None:
    a, b = shards.shard(split["a"]), shards.shard(split["b"])
    pid_a, gen_a, gen_b, count_b = a.pid, a.generation, b.generation, b.count
    extra = sorted(split["rasters"].glob("*.tif"))[2]
    shutil.copy2(extra, split["root"] / "b" / extra.name)
    index_folder(split["root"] / "b", split["b"], tiny_embedder, params=PARAMS)
    time.sleep(0.3)  # past the shards' recheck interval
    there = run_search(_req(split, "water", k=8), tiny_embedder, index_set=shards)
    here = run_search(_req(split, "water", k=8), tiny_embedder)
    assert _hits(there) == _hits(here) and not there.partial
    assert b.generation == gen_b + 1 and b.count > count_b
    assert (a.generation, a.pid) == (gen_a, pid_a)


def test_serve_engine_ray_answers_the_search_route_from_shards(split, ray_local: str, tiny_model_dir: Path,
                                                              tiny_embedder, tmp_path: Path) -> None:
    from tests.backend.serverproc import ServerProc

    root = split["root"]
    broken = root / "broken_http"
    broken.mkdir(exist_ok=True)
    (broken / "index.json").write_text("{not json", encoding="utf-8")
    srv = ServerProc(tmp_path / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir],
                     extra_args=["--engine", "ray"], env={"GEOVEC_RAY_ADDRESS": ray_local}).start()
    try:
        with srv.client() as c:
            r = c.post("/v1/search", json={"index": str(split["a"]), "indexes": [str(split["b"])], "text": "water",
                                           "k": 6})
            assert r.status_code == 200, r.text
            body = r.json()
            here = run_search(_req(split, "water"), tiny_embedder)
            assert [f["properties"]["tile_id"] for f in body["features"]] == [h[0] for h in _hits(here)]
            assert body["partial"] is False and body["missing"] == []
            r = c.post("/v1/search", json={"index": str(split["a"]), "indexes": [str(broken)], "text": "water"})
            assert r.status_code >= 400 and "cannot start" in r.json()["detail"], r.text
            assert "\n" not in r.json()["detail"]
    finally:
        assert srv.stop() == 0
    assert "shard" in srv.log_text and "started" in srv.log_text
