"""How fast a backend started with ``--parent-pid`` goes once its parent dies (no model loaded).

Starts ``geovec serve --parent-pid P`` where P is a throw-away ``sleep`` process, waits for
the token file, kills P with SIGKILL and times until the server process has exited.
Prints the machine and, per repeat, start-up time and exit delay.

    python benchmarks/bench_lifecycle.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402


def one(tmp: Path) -> tuple[float, float, int]:
    """(seconds to the token file, seconds from parent SIGKILL to server exit, exit code)."""
    parent = subprocess.Popen(["sleep", "600"])
    token = tmp / "server.json"
    env = {**os.environ, "GEOVEC_DATA_DIR": str(tmp / "data"), "GEOVEC_LOG_DIR": str(tmp / "log")}
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "geovec.backend", "serve", "--port", "0", "--device", "cpu",
                               "--token-file", str(token), "--parent-pid", str(parent.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        while True:
            try:
                if json.loads(token.read_text()).get("pid") == server.pid:
                    break
            except (OSError, ValueError):
                pass
            if server.poll() is not None:
                raise RuntimeError(f"geovec serve exited at start with {server.returncode}")
            time.sleep(0.05)
        started = time.perf_counter() - t0
        parent.kill()
        t1 = time.perf_counter()
        code = server.wait(60)
        return started, time.perf_counter() - t1, code
    finally:
        parent.kill()
        parent.wait()
        if server.poll() is None:
            server.kill()
            server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(machine("cpu"))
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    exits = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="geovec-lifecycle-") as d:
            started, exit_s, code = one(Path(d))
        exits.append(exit_s)
        print(f"run {i + 1}: start-up {started:.2f} s, exit {exit_s * 1000:.0f} ms after the parent's SIGKILL "
              f"(exit code {code})")
    print(f"exit after parent death: median {statistics.median(exits) * 1000:.0f} ms, max {max(exits) * 1000:.0f} ms "
          f"over {len(exits)} runs (watch interval 0.5 s)")


if __name__ == "__main__":
    main()
