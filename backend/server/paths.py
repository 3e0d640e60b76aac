"""Paths a client sends, checked against the folders the server may use."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .settings import Settings


def check_path(value: str, what: str, settings: Settings) -> Path:
    """``value`` as an absolute path; InputError for NUL bytes, huge names or paths outside allowed roots."""
    if not value or "\x00" in value or len(value) > 4096:
        raise InputError(f"{what} {value[:80]!r} is not a usable path", "give an absolute path to an existing file or folder")
    try:
        path = Path(value).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(f"{what} {value[:200]!r} cannot be resolved: {e}", "give an absolute path") from e
    if settings.allowed_roots and not any(path.is_relative_to(r.resolve()) for r in settings.allowed_roots):
        raise InputError(f"{what} {value[:200]!r} is outside the folders this server may use",
                         "use a path under: " + ", ".join(str(r) for r in settings.allowed_roots))
    return path
