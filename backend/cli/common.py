"""What every ``geovec`` sub-command module shares: exit codes, the usage error, request validation and
argument types, absolute paths, the one-line failure."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ..paths import one_line

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(Exception):
    """A bad command line (raised by the parser instead of printing usage and exiting)."""


def validated(schema: Any, /, **fields: Any) -> Any:
    """``schema(**fields)``; a pydantic validation error becomes a one-line usage error naming the field."""
    from pydantic import ValidationError

    try:
        return schema(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "__root__")
        msg = str(first.get("msg", e)).removeprefix("Value error, ")
        raise UsageError(f"{where + ': ' if where else ''}{msg}") from None


def fail(msg: str, code: int) -> int:
    """Print ``msg`` as one line on stderr (``geovec: error: ...``) and return ``code``."""
    print(f"geovec: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return code


def finite(text: str) -> float:
    """An argparse type: a finite number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def abs_path(path: str | None, base: str | None = None) -> str | None:
    """``path`` made absolute (requests carry absolute paths; ``base`` for paths relative to a folder)."""
    if path is None or not path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (Path(base).expanduser() if base else Path.cwd()).absolute() / p)


def group(text: str) -> tuple[str, list[str]]:
    """An argparse type: ``NAME=PATH,PATH,...`` (a stack of one-band files)."""
    name, sep, paths = text.partition("=")
    files = [p for p in paths.split(",") if p]
    if not sep or not name or not files:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH,PATH,...")
    return name, files


def check_writable(path: str) -> None:
    """InputError unless ``path`` can be created or written (nothing is left behind when it was absent)."""
    import os

    from ..errors import InputError

    p = Path(path).expanduser()
    existed = p.exists()
    try:
        if p.is_dir():
            raise IsADirectoryError(21, "is a folder")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
    except OSError as e:
        raise InputError(f"--geojson {one_line(path)!r} cannot be written: {e.strerror or e}",
                         "give a file path in a folder that exists and that you can write") from e
    if not existed:
        p.unlink(missing_ok=True)


def model_options(p: Any) -> None:
    """Add the model options every command that loads a model takes."""
    p.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                   help="weights dtype (auto: bf16 on GPUs and bf16-capable CPUs, else fp32)")
