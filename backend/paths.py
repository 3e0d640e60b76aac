"""Path policy for paths that arrive over HTTP, and paths shown to people.

* :func:`check_request_path`: a path from a request must be absolute, usable by the
  OS (no NUL, no name longer than the OS allows) and, when allowed roots are
  configured, lie under one of them **after** symlinks are resolved. The refusal
  reads the same whether or not the path exists, so it reveals nothing about
  files outside the roots.
* :func:`confined` / :func:`check_sources`: while a server job runs, every raster
  the scan opens is checked against the roots, VRT sources included (a VRT inside
  an allowed folder must not read files outside it).
* :func:`shown`: a path as text that always encodes (file names that are not
  valid UTF-8 arrive as surrogate escapes; they are shown as ``\\xNN``).

The containment rules work on pure paths, so they are tested with Windows paths
(drive letters, backslashes, case-insensitive) on any OS.
"""

from __future__ import annotations

import contextvars
import errno
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePath, PureWindowsPath

from .errors import ForbiddenPathError, InputError, NotFoundError

#: Paths in requests are absolute: POSIX ``/``, ``~``, a Windows drive ``C:\\`` or a UNC ``\\\\server``.
ABSOLUTE_PATH = r"^(/|~|[A-Za-z]:[\\/]|\\\\)"
#: Longest path text a request may carry (characters).
MAX_PATH_CHARS = 4096
#: How deep VRTs may reference other VRTs before the check gives up (a loop, or abuse).
MAX_VRT_DEPTH = 8
#: Largest VRT file parsed for its sources (bytes).
MAX_VRT_BYTES = 16 << 20

_roots: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("geovec_allowed_roots", default=())


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as text that encodes as UTF-8: undecodable bytes (surrogate escapes) become ``\\xNN``."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def one_line(text: str) -> str:
    r"""``text`` for one terminal line: control characters as ``\n``, ``\t``, ``\xNN`` or ``\uNNNN``."""
    text = shown(text)
    if text.isprintable():
        return text
    named = {"\n": r"\n", "\r": r"\r", "\t": r"\t"}
    return "".join(ch if ch.isprintable() else named.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 256
                                                                   else f"\\u{ord(ch):04x}") for ch in text)


def uniform_modes(folder: Path) -> int:
    """Give every file under ``folder`` the mode a new file gets here (0666 less the umask); returns it.

    Libraries write checkpoints with different modes (safetensors: 0600 via a temp file, the
    rest 0644); one mode makes a shared model folder readable by all or none.
    """
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    for root, _, names in os.walk(folder):
        for name in names:
            os.chmod(os.path.join(root, name), mode)
    return mode


def is_absolute(value: str, flavour: type[PurePath] = PurePath) -> bool:
    """Whether ``value`` is an absolute path for ``flavour`` (``C:\\x`` is, ``\\x`` and ``C:x`` are not on Windows)."""
    return flavour(value).is_absolute()


def within(path: PurePath, roots: Sequence[PurePath]) -> bool:
    """Whether ``path`` lies under (or is) one of ``roots``; Windows paths compare case-insensitively."""
    for root in roots:
        if type(root) is not type(path):
            continue
        p: PurePath = path
        r: PurePath = root
        if isinstance(path, PureWindowsPath):
            p, r = PureWindowsPath(str(path).lower()), PureWindowsPath(str(root).lower())
        if p == r or r in p.parents:
            return True
    return False


def _usable(value: str, what: str) -> None:
    if not value or "\x00" in value or len(value) > MAX_PATH_CHARS:
        raise InputError(f"{what} {shown(value[:80])!r} is not a usable path",
                         f"give an absolute path of at most {MAX_PATH_CHARS} characters without NUL bytes")


#: Longest resolved path accepted (bytes): room left below PATH_MAX for the files inside it.
MAX_PATH_BYTES = 3840


def os_check(path: Path, what: str, shown_as: str | None = None) -> None:
    """NotFoundError if the OS cannot have ``path`` (a name or path longer than it allows, a loop)."""
    why = "it is longer than the OS allows" if len(os.fsencode(str(path))) > MAX_PATH_BYTES else None
    if why is None:
        try:
            os.lstat(path)
        except OSError as e:
            if e.errno not in (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL):
                return
            why = e.strerror or "the OS refuses it"
    if why is not None:
        raise NotFoundError(f"{what} {shown(shown_as or str(path))[:200]!r} cannot exist: {why}",
                            f"give a path of at most {MAX_PATH_BYTES} bytes, each name at most 255 bytes, "
                            "without symlink loops")


def check_request_path(value: str, what: str, roots: Sequence[Path] = ()) -> Path:
    """``value`` (from a request) as a resolved absolute path allowed by ``roots`` (any when empty).

    Raises:
        InputError: not absolute, or NUL bytes.
        NotFoundError: a path the OS cannot have (too long, a symlink loop).
        ForbiddenPathError: outside ``roots`` (the same text whether or not the path exists).
    """
    _usable(value, what)
    expanded = os.path.expanduser(value)
    if not os.path.isabs(expanded) and re.match(ABSOLUTE_PATH, value):
        raise NotFoundError(f"{what} {shown(value[:200])!r} is a Windows path; this server runs on {os.name}",
                            "give a path on the machine the server runs on")
    if not os.path.isabs(expanded):
        raise InputError(f"{what} {shown(value[:200])!r} is a relative path",
                         "give an absolute path (the server's working folder is not yours)")
    for part in Path(expanded).parts:
        if len(os.fsencode(part)) > 255:
            raise NotFoundError(f"{what} {shown(value[:200])!r} cannot exist: it has a name longer than 255 bytes",
                                "give a path whose every name is at most 255 bytes")
    try:
        path = Path(expanded).resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(f"{what} {shown(value[:200])!r} cannot be resolved: {e}",
                         "give an absolute path without symlink loops") from e
    if roots and not within(path, resolved_roots(roots)):
        raise ForbiddenPathError(f"{what} {shown(value[:200])!r} is outside the folders this server may use",
                         "use a path under: " + ", ".join(shown(str(r)) for r in roots))
    os_check(path, what, value)
    return path


def resolved_roots(roots: Sequence[Path]) -> list[PurePath]:
    out: list[PurePath] = []
    for r in roots:
        try:
            out.append(Path(r).expanduser().resolve())
        except (OSError, RuntimeError):
            continue
    return out


def vrt_sources(path: str | Path, depth: int = 0) -> list[Path]:
    """Every file a VRT reads (``SourceFilename``, relative ones resolved), nested VRTs included.

    Raises:
        InputError: the VRT cannot be parsed, or nests deeper than :data:`MAX_VRT_DEPTH`.
    """
    p = Path(path)
    if depth > MAX_VRT_DEPTH:
        raise InputError(f"VRT {shown(str(p))!r} nests more than {MAX_VRT_DEPTH} VRTs deep",
                         "flatten the VRT (gdal_translate it to a GeoTIFF)")
    try:
        if p.stat().st_size > MAX_VRT_BYTES:
            raise InputError(f"VRT {shown(str(p))!r} is larger than {MAX_VRT_BYTES} bytes", "give a smaller VRT")
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as e:
        raise InputError(f"VRT {shown(str(p))!r} cannot be read as XML: {e}", "give a valid GDAL VRT") from e
    out: list[Path] = []
    for el in root.iter():
        if el.tag not in ("SourceFilename", "SourceDataset") or not (el.text or "").strip():
            continue
        name = el.text.strip()  # type: ignore[union-attr]
        if name.startswith("/vsi") or "://" in name:
            out.append(Path(name))  # a virtual file system: never under a root, refused by the check
            continue
        relative = el.get("relativeToVRT", "0") == "1" or el.tag == "SourceDataset" and not os.path.isabs(name)
        src = (p.parent / name) if relative else Path(name)
        src = src.resolve()
        out.append(src)
        if src.suffix.lower() == ".vrt" and src.is_file():
            out.extend(vrt_sources(src, depth + 1))
    return out


@contextmanager
def confined(roots: Sequence[Path]) -> Iterator[None]:
    """Within the block (this thread/context), :func:`check_sources` enforces ``roots`` (no-op if empty)."""
    token = _roots.set(tuple(roots))
    try:
        yield
    finally:
        _roots.reset(token)


def check_sources(path: str | Path) -> None:
    """With roots active (:func:`confined`), ForbiddenPathError unless ``path`` and, for a VRT, all its sources lie under them."""
    roots = _roots.get()
    if not roots:
        return
    allowed = resolved_roots(roots)
    p = Path(path).resolve()
    bad = [] if within(p, allowed) else [p]
    if not bad and p.suffix.lower() == ".vrt":
        bad = [s for s in vrt_sources(p) if not within(s, allowed)]
    if bad:
        raise ForbiddenPathError(f"{shown(p.name)} reads {shown(str(bad[0]))!r}, outside the folders this server may use",
                         "keep the rasters (and the files a VRT references) under the allowed folders")
