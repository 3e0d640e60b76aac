"""Backend messages in the words of the GUI: dock controls and settings, never command-line flags.

The backend's error bodies carry the facts (``error`` code, ``detail``, ``hint``); the
same backend serves the CLI, so its hints name flags (``--crs``, ``--raster``) and
commands (``geovec index FOLDER ...``). Here they become the names of the dock's
controls, the index dialog's fields and the GeoVec settings. The original text goes to
the log panel.
"""

from __future__ import annotations

import re

#: What to do, in dock terms, by error code (used when the backend's hint gives a command line).
GUI_HINTS = {
    "not_found": "choose another index in the GeoVec dock, or build one with 'New index from folder…'",
    "out_of_bounds": "draw the box or click the point on imagery that is in the index (the raster layer under it "
                     "must have been indexed), or check the project CRS",
    "bad_crs": "check the project CRS (Project ▸ Properties ▸ CRS) and the CRS of the layer you drew on",
    "busy": "wait for the running indexing job, or cancel it in the GeoVec dock",
    "model_unavailable": "choose a local checkpoint folder or the tiny test model in 'New index from folder…', "
                         "or the model in GeoVec ▸ Settings",
    "model_mismatch": "index the imagery again with the model the backend runs, or choose that index's model in "
                      "GeoVec ▸ Settings",
    "index_corrupt": "build the index again with 'New index from folder…'",
}

_DOCK = "in the GeoVec dock"
_NEW = "in 'New index from folder…'"
#: (pattern, replacement), most specific first; flags with their metavariables
_PHRASES: list[tuple[str, str]] = [
    (r"--level region needs --rerank N", "'Rank: Regions inside tiles' needs 'Regions from top tiles' set to a number"),
    (r"add --rerank N \([^)]*\)", f"set 'Regions from top tiles' {_DOCK} to a number"),
    (r"`?geovec model tiny[^`)\n;]*`?", f"'Tiny test model' {_NEW}"),
    (r"`geovec [^`]*`", "the GeoVec dock"),
    (r"geovec index FOLDER --repair[^)\n;]*", "'New index from folder…' on the same folder and index"),
    (r"geovec index FOLDER[^)\n;]*", "'New index from folder…'"),
    (r"geovec index\b", "'New index from folder…'"),
    (r"geovec serve\b[^)\n;]*", "Connect in the GeoVec dock"),
    (r"geovec train\b", "training (outside QGIS)"),
    (r"geovec [a-z]+\b", "the GeoVec dock"),
    (r"--level region", f"'Rank: Regions inside tiles' {_DOCK}"),
    (r"--level( tile)?", f"'Rank' {_DOCK}"),
    (r"--rerank( N)?", f"'Regions from top tiles' {_DOCK}"),
    (r"--within-crs", "the CRS of the map view or of the selected polygon's layer"),
    (r"--within-mode", "the area rule"),
    (r"--within", f"'Search in view' (or a selected polygon) {_DOCK}"),
    (r"--out-crs", "the project CRS (Project ▸ Properties ▸ CRS)"),
    (r"--crs", "the CRS of the map you drew on (the project CRS)"),
    (r"--raster( FILE)?", "the raster layer under the box or point (it must be in the index)"),
    (r"--regions( SPEC)?", f"'Also index regions inside tiles' {_NEW}"),
    (r"--model( (PATH|MODEL|[/~.]\S*[^\s),;]))?", f"the model {_NEW} or in GeoVec ▸ Settings"),
    (r"--device", "'Device' in GeoVec ▸ Settings"),
    (r"--tile-size", f"'Tile size' {_NEW}"),
    (r"--overlap", f"'Overlap' {_NEW}"),
    (r"--bands", f"'Bands' {_NEW}"),
    (r"--min-valid", "the minimum valid fraction"),
    (r"--min-score", f"'Minimum score' {_DOCK}"),
    (r"--index( DIR)?", f"the index {_DOCK}"),
    (r"--force", "an index built with the same model"),
    (r"--box", "a drawn box"),
    (r"--point", "a clicked point"),
    (r"--text", "the description"),
    (r"--scene", "the scene"),
    (r"--label", "the label"),
]
_COMPILED = [(re.compile(p), r) for p, r in _PHRASES]
_ANY_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def speaks_cli(text: str) -> bool:
    """Whether ``text`` names a flag, a ``geovec`` command or a quoted command line."""
    return bool(_ANY_FLAG.search(text)) or "geovec " in text or "`" in text


def gui_text(text: str) -> str:
    """``text`` with every flag and command replaced by the dock control or setting it stands for."""
    if not speaks_cli(text):
        return text
    for pattern, words in _COMPILED:
        text = pattern.sub(words, text)
    text = _ANY_FLAG.sub(lambda m: "the " + m.group(1).replace("-", " ") + " option", text)
    return text.replace("`", "'")


def gui_hint(hint: str, code: str) -> str:
    """What to do, in dock terms: ``hint`` reworded, or the dock's advice for ``code`` when it gives a command."""
    if not speaks_cli(hint):
        return hint
    if code in GUI_HINTS:
        return GUI_HINTS[code]
    return gui_text(hint)
