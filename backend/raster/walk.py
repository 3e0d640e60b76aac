"""Walk a folder for raster files, reporting what cannot be walked instead of skipping it.

``pathlib.Path.rglob`` silently skips a subfolder it cannot list (permissions, an
I/O error) and a dangling symlink; a re-index then took that folder's scenes for
deleted. :func:`walk_rasters` reports each such folder or link (path, reason), and
lists unreadable folders separately so the caller keeps the scenes under them.
Symlinked folders are followed once each; a link back to a folder already being
walked (a loop) is reported.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import shown

EXTENSIONS = (".tif", ".tiff", ".vrt")


@dataclass
class Walk:
    """Raster files found (sorted, resolved, unique), problems (path, reason), folders not listed."""

    files: list[Path] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def walk_rasters(folder: Path) -> Walk:
    """Every .tif/.tiff/.vrt under ``folder`` (hidden entries skipped), with what could not be walked."""
    out = Walk()
    seen_files: set[str] = set()
    active: set[tuple[int, int]] = set()  # (dev, ino) of the folders on the current walk path
    done: set[tuple[int, int]] = set()

    def visit(d: Path) -> None:
        try:
            st = os.stat(d)
        except OSError as e:
            out.errors.append((shown(str(d)), f"folder cannot be read ({_reason(e)}); its indexed scenes are kept"))
            out.unreadable.append(d)
            return
        key = (st.st_dev, st.st_ino)
        if key in active:
            out.errors.append((shown(str(d)), "symlink loop: this folder links back to a folder that contains it"))
            return
        if key in done:
            return
        active.add(key)
        try:
            try:
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                out.errors.append((shown(str(d)),
                                   f"folder cannot be listed ({_reason(e)}); its indexed scenes are kept"))
                out.unreadable.append(d)
                return
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                _entry(Path(entry.path), entry.is_symlink())
        finally:
            active.discard(key)
            done.add(key)

    def _entry(p: Path, link: bool) -> None:
        try:
            st = os.stat(p)  # follows a symlink
        except OSError as e:
            if link:
                kind = "symlink loop" if e.errno == errno.ELOOP else "dangling symlink"
                out.errors.append((shown(str(p)), f"{kind} to {_target(p)!r} ({_reason(e)})"))
            else:
                out.errors.append((shown(str(p)), f"cannot be read ({_reason(e)})"))
            return
        if stat.S_ISDIR(st.st_mode):
            visit(p)
        elif stat.S_ISREG(st.st_mode) and p.suffix.lower() in EXTENSIONS:
            real = str(p.resolve())
            if real not in seen_files:
                seen_files.add(real)
                out.files.append(p)

    visit(folder)
    out.files.sort()
    return out


def _target(p: Path) -> str:
    try:
        return shown(os.readlink(p))
    except OSError:
        return "?"
