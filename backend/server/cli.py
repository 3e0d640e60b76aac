"""``geovec serve``: run the backend on loopback with a fresh token.

The main CLI adds this sub-command lazily through :func:`add_serve_parser`;
``python -m geovec.backend.server.cli`` runs it alone.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)
LEVELS = ("debug", "info", "warning", "error")


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``serve`` to ``geovec``'s sub-commands; ``args.func(args)`` runs it."""
    p = subparsers.add_parser("serve", help="run the local HTTP backend (loopback, token auth)",
                              description="Run GeoVec's HTTP API on 127.0.0.1. Prints the URL and writes it with the token "
                                          "to the token file (mode 0600; the token is never printed). No model is loaded "
                                          "until a request needs one.")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1; others need --allow-remote)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 0 = a random free port)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default=None)
    p.add_argument("--model", default=None, help="model loaded on first use: preset, local dir or hub id")
    p.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"), default=None,
                   help="weights dtype (default auto: bf16 on GPUs and bf16-capable CPUs, else fp32)")
    p.add_argument("--image-size", type=int, default=None, help="image edge the model sees (default: the preset's)")
    p.add_argument("--allow-remote", action="store_true", default=None,
                   help="allow a non-loopback --host (anyone with the token on that network can use it)")
    p.add_argument("--log-level", choices=LEVELS, default=None, help="log file/console level (default info)")
    p.add_argument("--token-file", default=None, help="where to write {url, token, pid} (GEOVEC_TOKEN_FILE)")
    p.add_argument("--data-dir", default=None, help="jobs file and default index folder (GEOVEC_DATA_DIR)")
    p.add_argument("--no-resume", action="store_true", help="do not resume interrupted jobs at start")
    p.add_argument("--engine", choices=("local", "ray"), default=None,
                   help="ray: searches put each index in a shard actor on a Ray cluster (GEOVEC_ENGINE)")
    p.add_argument("--address", default=None,
                   help="--engine ray: cluster address (auto, ray://HOST:10001; GEOVEC_RAY_ADDRESS); default: a local Ray")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="stop gracefully once process PID has exited (set by clients that start the server)")
    p.set_defaults(func=run_serve)
    return p


def setup_logging(log_dir: Path, level: str) -> Path:
    """Rotating ``server.log`` (0600, in a 0700 ``log_dir``) plus stderr, at ``level``."""
    from .logfiles import PrivateRotatingFileHandler, private_dir

    private_dir(log_dir)
    path = log_dir / "server.log"
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s")
    file_handler = PrivateRotatingFileHandler(path, maxBytes=5 << 20, backupCount=3, encoding="utf-8")
    file_handler.setFormatter(fmt)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(file_handler)
    root.addHandler(console)
    root.setLevel(level.upper())
    return path


def bind(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening socket on ``host:port`` (0 = random) and the URL clients use."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, proto, _, addr = infos[0]
    # proto IPPROTO_TCP (not 0) so asyncio sets TCP_NODELAY on accepted connections; set it here too
    # (accepted sockets inherit it). Without it, Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(addr)
    sock.listen(128)
    sock.set_inheritable(True)
    real_port = sock.getsockname()[1]
    shown = host if host not in ("0.0.0.0", "::", "") else socket.gethostname()
    shown = f"[{shown}]" if ":" in shown else shown
    return sock, f"http://{shown}:{real_port}"


def run_serve(args: argparse.Namespace) -> int:
    """Start the server and block until SIGINT/SIGTERM; 0 on a clean shutdown."""
    import uvicorn

    from ..errors import GeoVecError
    from .app import create_app
    from .settings import Settings, is_loopback

    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, device=args.device, model=args.model, dtype=args.dtype,
            image_size=args.image_size,
            allow_remote=args.allow_remote, log_level=args.log_level, token_file=args.token_file,
            data_dir=args.data_dir, auto_resume=False if args.no_resume else None,
            engine=getattr(args, "engine", None), ray_address=getattr(args, "address", None))
    except (GeoVecError, ValueError) as e:
        print(f"geovec serve: {e}", file=sys.stderr)
        return 2
    log_path = setup_logging(settings.log_dir, settings.log_level)
    if not is_loopback(settings.host):
        if not settings.allow_remote:
            print(f"geovec serve: --host {settings.host} is not a loopback address; add --allow-remote to "
                  "expose the backend to the network", file=sys.stderr)
            return 2
        log.warning("listening on %s: anyone on that network who has the token can use this backend",
                    settings.host)
    try:
        sock, url = bind(settings.host, settings.port)
    except OSError as e:
        print(f"geovec serve: cannot listen on {settings.host}:{settings.port}: {e}", file=sys.stderr)
        return 1
    settings = settings.model_copy(update={"url": url})
    ray = None
    if settings.engine == "ray":  # join (or start) Ray here, in the main thread: its signal handlers need it
        from ..indexing.ray_engine import connect

        try:
            ray = connect(settings.ray_address)
        except GeoVecError as e:
            sock.close()
            print(f"geovec serve: {e}", file=sys.stderr)
            return 2
    app = create_app(settings)
    # The token goes only to the token file (0600): consoles end up in logs other users can read.
    print(f"GeoVec backend listening on {url}\n  token file: {settings.token_file} (holds the bearer token)\n"
          f"  log: {log_path}\n  try: curl {url}/v1/health", flush=True)
    config = uvicorn.Config(app, log_config=None, log_level=settings.log_level.lower(),
                            access_log=settings.log_level.lower() == "debug", lifespan="on",
                            timeout_graceful_shutdown=10, server_header=False)
    server = uvicorn.Server(config)
    parent_gone: list[bool] = []
    if args.parent_pid:
        from .lifecycle import watch_parent

        def stop_for_parent() -> None:
            parent_gone.append(True)
            server.should_exit = True

        watch_parent(args.parent_pid, stop_for_parent)
        log.info("stops when process %s exits", args.parent_pid)
    # uvicorn re-raises the SIGTERM/SIGINT that stopped it once it has shut down; a graceful stop
    # is a success here (exit 0), so the re-raised signal lands on a handler that just notes it.
    stopped_by: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: stopped_by.append(signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if ray is not None:  # after the app closed its shard actors
            ray.shutdown()
    if stopped_by:
        log.info("stopped by %s after a graceful shutdown", signal.Signals(stopped_by[0]).name)
    if parent_gone:  # shut down cleanly; leave now instead of waiting on idle worker threads
        from .lifecycle import exit_now

        exit_now(0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="geovec")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
