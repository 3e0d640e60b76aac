"""An index is bound to the model that built it.

The sidecar records the model's identity (``Embedder.identity``: preset, checkpoint,
weights fingerprint, dtype, image policy). Searching or re-indexing with another
model would mix vectors of two spaces and return meaningless hits, so it is refused
with :class:`ModelMismatchError` naming both, unless forced. The image size is
not a reason to refuse: queries are embedded at the size the index was built with.
An index whose images the model in use would size otherwise at that size (built
before the preset followed its authors' processor bounds, e.g. VLM2Vec's 1344 px
fed as 2,304 image tokens instead of 1,225) is refused: it must be re-indexed.
A different float dtype only moves vectors by ~1e-4 (cosine 0.9999), so it is logged;
int8 (quantised linear layers) moves them more, so that is a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import GeoVecError, ModelMismatchError
from .model.presets import ImagePolicy

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
    if not reasons:
        old_images = image_policy_change(recorded, current)
        if old_images:
            msg = f"index {index} was built under another image policy of preset {recorded.get('preset')}: {old_images}"
            if force:
                log.warning("%s (forced: searched as built)", msg)
                return
            raise ModelMismatchError(msg, "re-index it into a new --index (its vectors are not comparable with "
                                          "this model's), or --force to search it as built")
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


def image_policy_change(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    """How the index's fixed-size images differ from what the model in use makes of that size ('' if not).

    The edge (``--image-size``) carries over; the processor bound must give the same pixels.
    """
    a, b = recorded.get("image"), current.get("image")
    if not (isinstance(a, dict) and isinstance(b, dict)) or a.get("kind") != "fixed" or b.get("kind") != "fixed":
        return ""
    try:
        old = ImagePolicy(**a)
        new = ImagePolicy(**b).with_size(old.size)
        if old.processed_hw(0, 0) == new.processed_hw(0, 0):
            return ""
    except (TypeError, ValueError, AssertionError, GeoVecError):
        return ""
    return f"its images were fed at {old.describe()}, the model in use feeds {new.describe()}"


def bind(embedder: Embedder, meta: dict[str, Any], *, index: str, force: bool = False) -> Embedder:
    """``embedder`` checked against the index's model, sized to the index's image policy."""
    recorded = recorded_identity(meta)
    check_identity(recorded, embedder.identity, index=index, force=force,
                   dims=(int(meta["dim"]), int(embedder.dim)) if meta.get("dim") is not None else None)
    image = recorded.get("image")
    if isinstance(image, dict) and image != embedder.identity.get("image"):
        return embedder.with_image(image)
    return embedder
