"""An index is bound to the model that built it.

The sidecar records the model's identity (``Embedder.identity``: preset, checkpoint,
weights fingerprint, dtype, image policy). Searching or re-indexing with another
model would mix vectors of two spaces and return meaningless hits, so it is refused
with :class:`ModelMismatchError` naming both, unless forced. The image policy is
not a reason to refuse: queries are embedded at the size the index was built with.
A different float dtype only moves vectors by ~1e-4 (cosine 0.9999), so it is logged;
int8 (quantised linear layers) moves them more, so that is a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import ModelMismatchError

if TYPE_CHECKING:
    from .model.encoder import Embedder

log = logging.getLogger(__name__)


def recorded_identity(meta: dict[str, Any]) -> dict[str, Any]:
    """The model identity an index sidecar records (older indexes: preset and checkpoint only)."""
    model = meta.get("model")
    ident = dict(model) if isinstance(model, dict) else {}
    ident.setdefault("preset", meta.get("preset", ""))
    ident.setdefault("checkpoint", meta.get("checkpoint", ""))
    return ident


def describe(ident: dict[str, Any]) -> str:
    fp = f", weights {ident['fingerprint']}" if ident.get("fingerprint") else ""
    return f"{ident.get('checkpoint') or '?'} (preset {ident.get('preset') or '?'}{fp})"


def check_identity(recorded: dict[str, Any], current: dict[str, Any], *, index: str, force: bool = False,
                   dims: tuple[int, int] | None = None) -> None:
    """ModelMismatchError when ``current`` is not the model ``recorded`` for the index at ``index``.

    Same weights means the same fingerprint when both have one, else the same checkpoint
    name; the preset (prompt format) must match too. ``dims`` (index, model) must always
    match: no ``force`` makes vectors of another dimension comparable.
    """
    if dims is not None and int(dims[0]) != int(dims[1]):
        raise ModelMismatchError(
            f"index {index} holds {dims[0]}-d vectors but model {describe(current)} gives {dims[1]}-d ones",
            f"use the index's model, {describe(recorded)}")
    reasons = []
    if recorded.get("preset") and current.get("preset") != recorded.get("preset"):
        reasons.append(f"preset {current.get('preset')!r} instead of {recorded.get('preset')!r}")
    a, b = recorded.get("fingerprint"), current.get("fingerprint")
    if a and b:
        if a != b:
            reasons.append(f"weights {b} instead of {a}")
    elif recorded.get("checkpoint") and current.get("checkpoint") != recorded.get("checkpoint"):
        reasons.append(f"checkpoint {current.get('checkpoint')!r} instead of {recorded.get('checkpoint')!r}")
    if reasons:
        msg = (f"index {index} was built with {describe(recorded)}, not with the model in use, "
               f"{describe(current)}: {'; '.join(reasons)}")
        if force:
            log.warning("%s (forced: its hits may be meaningless)", msg)
            return
        raise ModelMismatchError(msg, "use the index's model (--model), or --force to search anyway "
                                      "(hits may be meaningless)")
    if recorded.get("dtype") and current.get("dtype") and recorded["dtype"] != current["dtype"]:
        if "int8" in (recorded["dtype"], current["dtype"]):  # quantised: vectors move more than a float dtype's
            log.warning("index %s was built in %s, the model runs in %s (int8 vectors differ from float ones "
                        "by up to ~1e-2 in cosine; hits may reorder slightly)", index, recorded["dtype"],
                        current["dtype"])
        else:
            log.info("index %s was built in %s, the model runs in %s (vectors differ by ~1e-4)", index,
                     recorded["dtype"], current["dtype"])


def bind(embedder: Embedder, meta: dict[str, Any], *, index: str, force: bool = False) -> Embedder:
    """``embedder`` checked against the index's model, sized to the index's image policy."""
    recorded = recorded_identity(meta)
    check_identity(recorded, embedder.identity, index=index, force=force,
                   dims=(int(meta["dim"]), int(embedder.dim)) if meta.get("dim") is not None else None)
    image = recorded.get("image")
    if isinstance(image, dict) and image != embedder.identity.get("image"):
        return embedder.with_image(image)
    return embedder
