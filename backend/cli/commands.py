"""Sub-commands that other packages add to ``geovec`` (entry-point group ``geovec.commands``).

An entry point names a function ``add(subparsers)`` that adds one sub-command
and sets its ``func``; ``geovec train`` and ``geovec eval`` come from
``geovec.training`` this way, so the backend never imports the training code::

    [project.entry-points."geovec.commands"]
    train = "geovec.training.cli:add_train_parser"
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

log = logging.getLogger(__name__)
GROUP = "geovec.commands"


def registered() -> dict[str, EntryPoint]:
    """Command name -> entry point, for every installed distribution (first one wins)."""
    out: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        out.setdefault(ep.name, ep)
    return out


def add_registered(subparsers: Any, only: str | None = None) -> list[str]:
    """Add the registered sub-commands (just ``only`` when given); return the names added.

    A command whose module cannot be imported (an optional dependency is missing)
    is left out with a debug message, like a command that is not installed.
    """
    added = []
    for name, ep in sorted(registered().items()):
        if only is not None and name != only:
            continue
        try:
            ep.load()(subparsers)
        except ImportError as e:
            log.debug("geovec %s not available: %s", name, e)
            continue
        added.append(name)
    return added
