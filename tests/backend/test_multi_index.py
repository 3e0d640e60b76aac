"""Search across several indexes built with the same model: CLI, service and HTTP."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.cli import main
from geovec.backend.demo import write_sample_folder
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.schemas import SearchRequest
from geovec.backend.search.multi import MultiStore
from geovec.backend.service import run_search
from geovec.backend.types import TilingParams
from tests.backend.serverproc import ServerProc

PARAMS = TilingParams(tile_size=32)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> dict[str, Path]:
    """The sample scenes in one index ('all') and split over two ('a': two scenes, 'b': one)."""
    root = tmp_path_factory.mktemp("multi")
    folder = write_sample_folder(root / "rasters", size=64)
    files = sorted(folder.glob("*.tif"))
    for name, chosen in (("a", files[:2]), ("b", files[2:])):
        (root / name).mkdir()
        for f in chosen:
            shutil.copy2(f, root / name / f.name)
        index_folder(root / name, root / f"idx_{name}", tiny_embedder, params=PARAMS)
    shutil.copytree(root / "a", root / "both")
    shutil.copytree(root / "b", root / "both", dirs_exist_ok=True)
    index_folder(root / "both", root / "idx_all", tiny_embedder, params=PARAMS)
    return {"root": root, "a": root / "idx_a", "b": root / "idx_b", "all": root / "idx_all"}


def test_two_indexes_answer_like_one_index_holding_both(split, tiny_embedder) -> None:
    for text in ("water", "dense city blocks"):
        one = run_search(SearchRequest(index=str(split["all"]), text=text, k=8), tiny_embedder)
        two = run_search(SearchRequest(index=str(split["a"]), indexes=[str(split["b"])], text=text, k=8),
                         tiny_embedder)
        scores_one = [round(f.properties["score"], 5) for f in one.features]
        scores_two = [round(f.properties["score"], 5) for f in two.features]
        assert scores_two == scores_one and len(scores_two) == 8
        assert scores_two == sorted(scores_two, reverse=True)
        assert [f.properties["rank"] for f in two.features] == list(range(1, 9))
        where = {f.properties["index"] for f in two.features}
        assert where <= {str(split["a"].resolve()), str(split["b"].resolve())} and len(where) == 2
        for f in two.features:  # each hit names the index that holds it
            store = IndexStore.open(f.properties["index"])
            try:
                assert store.get(f.properties["tile_id"]).window == tuple(f.properties["window"])
            finally:
                store.close()
        assert two.query["indexes"] == [str(split["a"].resolve()), str(split["b"].resolve())]


def test_a_tile_in_two_indexes_counts_once(split) -> None:
    stores = [IndexStore.open(split["a"]), IndexStore.open(split["a"]), IndexStore.open(split["b"])]
    multi = MultiStore(stores)
    try:
        q = stores[0].vector(next(iter(stores[0].tile_ids(stores[0].scenes()[0]["scene_id"]))))
        hits = multi.search(q, multi.count)[0]
        assert len(hits) == len({r.tile_id for r, _ in hits}) == stores[0].count + stores[2].count
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    finally:
        multi.close()


def test_a_point_query_finds_its_scene_in_the_second_index(split, tiny_embedder) -> None:
    store = IndexStore.open(split["b"])
    rec = store.search(np.ones(store.dim, np.float32), 1)[0][0][0]
    store.close()
    req = SearchRequest(index=str(split["a"]), indexes=[str(split["b"])], point=[rec.center_lon, rec.center_lat], k=3)
    resp = run_search(req, tiny_embedder)
    assert resp.features and resp.query["scene"]
    alone = run_search(req.model_copy(update={"index": str(split["b"]), "indexes": []}), tiny_embedder)
    # the same query vector: b's hits in the merged list are b's own best, in order, with the same scores
    got = [(f.properties["tile_id"], f.properties["score"]) for f in resp.features]
    with IndexStore.open(split["b"]) as sb:
        in_b = set().union(*(sb.tile_ids(sc["scene_id"]) for sc in sb.scenes()))
    from_b = [(t, s) for t, s in got if t in in_b]
    want = [(f.properties["tile_id"], f.properties["score"]) for f in alone.features]
    assert from_b == want[: len(from_b)]
    if len(from_b) < len(got):  # hits of index a outranked the rest of b's
        assert min(s for _, s in got) >= want[len(from_b)][1]
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def test_cli_repeats_index_and_refuses_another_model(split, tmp_path: Path, capsys) -> None:
    code = main(["search", "--index", str(split["a"]), "--index", str(split["b"]), "--text", "water", "--k", "4",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    props = [f["properties"] for f in json.loads(out)["features"]]
    assert len(props) == 4 and all(p["index"] for p in props)
    other = tmp_path / "other"
    shutil.copytree(split["b"], other)
    meta = json.loads((other / "index.json").read_text())  # made an index of another model
    with sqlite3.connect(other / "meta.sqlite") as con:
        con.execute("UPDATE info SET value = ? WHERE key = 'checkpoint'", (json.dumps("someone/else"),))
    meta["checkpoint"] = "someone/else"
    meta["model"] = {**meta.get("model", {}), "checkpoint": "someone/else", "fingerprint": "0" * 16}
    (other / "index.json").write_text(json.dumps(meta))
    code = main(["search", "--index", str(split["a"]), "--index", str(other), "--text", "water"])
    err = capsys.readouterr().err
    assert code == 1 and "different models" in err and "someone/else" in err


def test_http_search_takes_indexes(split, tiny_model_dir: Path) -> None:
    root = split["root"]
    srv = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir]).start()
    try:
        with srv.client() as c:
            r = c.post("/v1/search", json={"index": str(split["a"]), "indexes": [str(split["b"])], "text": "water",
                                           "k": 6})
            assert r.status_code == 200, r.text
            feats = r.json()["features"]
            assert len(feats) == 6 and {f["properties"]["index"] for f in feats} <= {
                str(split["a"].resolve()), str(split["b"].resolve())}
            r = c.post("/v1/search", json={"index": str(split["a"]), "indexes": ["/etc"], "text": "water"})
            assert r.status_code == 403 and "outside the folders" in r.json()["detail"], r.text
    finally:
        assert srv.stop() == 0
