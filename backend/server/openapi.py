"""Write or check the committed OpenAPI document ``backend/openapi.json``.

    python -m geovec.backend.server.openapi --write   # regenerate after changing routes/schemas
    python -m geovec.backend.server.openapi --check   # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parents[1] / "openapi.json"


def document() -> dict[str, Any]:
    """The OpenAPI document of the app, independent of the machine and the environment."""
    from .app import create_app
    from .settings import Settings

    return create_app(Settings.for_docs()).openapi()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m geovec.backend.server.openapi", description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help=f"write {PATH.name}")
    g.add_argument("--check", action="store_true", help=f"fail if {PATH.name} is not current")
    p.add_argument("--path", type=Path, default=PATH)
    args = p.parse_args(argv)
    text = render()
    if args.write:
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
    if current != text:
        print(f"{args.path} is stale: run `python -m geovec.backend.server.openapi --write` (or `make openapi`)",
              file=sys.stderr)
        return 1
    print(f"{args.path} is current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
