"""Paths a client sends, checked against the folders the server may use."""

from __future__ import annotations

from pathlib import Path

from .settings import Settings


def check_path(value: str, what: str, settings: Settings) -> Path:
    """``value`` as a resolved absolute path allowed by the settings (see :func:`..paths.check_request_path`)."""
    from ..paths import check_request_path

    return check_request_path(value, what, settings.allowed_roots)
