"""One relevance-feedback round (``/v1/refine``'s work, in process) on a 100k-tile index.

The index holds ``--n`` random unit vectors of ``--dim`` (1536: Qwen2-VL-2B's width) with
plausible tile records, written through IndexStore (the same builder as bench_http.py).
Each round takes the original query vector and 10 good + 10 bad marked tile ids,
fetches the marked vectors from SQLite, fits the Rocchio update and the linear probe,
searches the hnsw graph along the refined direction and builds the GeoJSON response
(``workflows.feedback.refine``). The query embedding itself is not part of a round: the
first round returns it and the next rounds send it back.

    .venv/bin/python benchmarks/bench_feedback.py [--n 100000] [--dim 1536] [--rounds 100] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402
from bench_http import build_index  # noqa: E402

from geovec.backend.index.store import IndexStore  # noqa: E402
from geovec.backend.schemas_workflows import RefineRequest  # noqa: E402
from geovec.backend.workflows.feedback import refine  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--marks", type=int, default=10, help="good and bad marks per round (each)")
    ap.add_argument("--cache", help="keep the built index here and reuse it")
    args = ap.parse_args()
    print(machine("cpu"))
    tmp = None
    if args.cache:
        path = Path(args.cache) / f"feedback_{args.n}_{args.dim}"
    else:
        tmp = tempfile.TemporaryDirectory(prefix="geovec-bench-feedback-")
        path = Path(tmp.name) / "idx"
    if not (path / "index.json").exists():
        secs = build_index(path, args.n, args.dim, "tiny", "synthetic")
        print(f"built {args.n} x {args.dim} index (random unit vectors, M=16, ef_c=200) in {secs:.0f} s")
    rng = np.random.default_rng(1)
    times: list[float] = []
    with IndexStore.open(path) as store:
        assert store.count == args.n, store.count
        for r in range(args.rounds + 3):
            ids = rng.choice(args.n, size=2 * args.marks, replace=False)
            q = rng.standard_normal(args.dim).astype(np.float32)
            req = RefineRequest(index=str(path), vector=[0.0], good=[f"t{i:07d}" for i in ids[: args.marks]],
                                bad=[f"t{i:07d}" for i in ids[args.marks:]], k=10)
            t0 = time.perf_counter()
            resp = refine(store, req, q)
            dt = (time.perf_counter() - t0) * 1000
            assert len(resp.features) == 10
            if r >= 3:  # warm-up: first SQLite pages and pyproj transformers
                times.append(dt)
    s = sorted(times)
    p99 = s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]
    print(f"feedback round, {args.n} tiles x {args.dim}-d, {args.marks} good + {args.marks} bad marks, k=10, "
          f"{len(times)} rounds: p50 {statistics.median(s):.2f} ms, p99 {p99:.2f} ms, max {s[-1]:.2f} ms")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
