"""Path policy for paths that arrive over HTTP, and paths shown to people.

* :func:`check_request_path`: a path from a request must be absolute, usable by the
  OS (no NUL, no name longer than the OS allows) and, when allowed roots are
  configured, lie under one of them **after** symlinks are resolved. The refusal
  reads the same whether or not the path exists, so it reveals nothing about
  files outside the roots.
* :func:`confined` / :func:`check_read`: while a server request or job runs, every
  path a request names (:func:`gate`, called by the ``AbsPath`` type's validator) and
  every file reached from one (VRT sources, ``within`` files, region and label layers)
  is checked against the roots, VRT sources included (a VRT inside an allowed folder
  must not read files outside it).
* :func:`output_file` / :func:`make_folder`: writes. The final file is never opened by
  name: a temporary file is created beside it (``O_EXCL``, relative to the folder's
  descriptor, opened after the folder was checked) and renamed over it, so a symlink
  at the final name is replaced, never written through. OS failures (a folder in the
  way, read-only, disk full, the folder gone) become :class:`~.errors.WriteError`.
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
import secrets
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePath, PureWindowsPath

from .errors import ForbiddenPathError, GeoVecError, InputError, NoSpaceError, NotFoundError, WriteError

#: Paths in requests are absolute: POSIX ``/``, ``~``, a Windows drive ``C:\\`` or a UNC ``\\\\server``.
ABSOLUTE_PATH = r"^(/|~|[A-Za-z]:[\\/]|\\\\)"
#: Longest path text a request may carry (characters).
MAX_PATH_CHARS = 4096
#: How deep VRTs may reference other VRTs before the check gives up (a loop, or abuse).
MAX_VRT_DEPTH = 8
#: Largest VRT file parsed for its sources (bytes).
MAX_VRT_BYTES = 16 << 20

#: The allowed roots of the request or job running in this context; None outside the server (library, CLI).
_roots: contextvars.ContextVar[tuple[Path, ...] | None] = contextvars.ContextVar("geovec_allowed_roots",
                                                                                  default=None)


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
    """Within the block (this thread/context) the server's path policy holds.

    Request paths (:func:`gate`) must be absolute and, with ``roots``, under them;
    :func:`check_read` and :func:`output_file` enforce ``roots`` (no limit when empty).
    """
    token = _roots.set(tuple(roots))
    try:
        yield
    finally:
        _roots.reset(token)


def active_roots() -> tuple[Path, ...] | None:
    """The roots of the server context this runs in (empty: any folder), or None outside the server."""
    return _roots.get()


def gate(value: str, what: str) -> str:
    """A path named by a request, checked by :func:`check_request_path` in a server context (unchanged outside).

    This is what the ``AbsPath`` type of every request model calls, so no route can read or
    write a path field without it. Returns the resolved path as text.
    """
    roots = _roots.get()
    if roots is None:
        return value
    return str(check_request_path(value, what, roots))


def looks_like_path(value: str) -> bool:
    """Whether a field that takes a path *or* text (``within``: GeoJSON, WKT or a file) holds a path."""
    text = value.strip()
    return bool(re.match(ABSOLUTE_PATH, text)) and "\n" not in text and len(text) <= MAX_PATH_CHARS


def check_read(path: str | Path, what: str = "file") -> Path:
    """``path`` resolved; with roots active, ForbiddenPathError unless it and, for a VRT, all its sources lie under them.

    The one check for files reached from a request (a raster, a VRT's sources, a ``within``
    file, a region or label layer). The refusal reads the same whether the file exists or not.
    """
    roots = _roots.get()
    p = Path(path).expanduser()
    if not roots:
        return p
    allowed = resolved_roots(roots)
    try:
        p = p.resolve()
    except (OSError, RuntimeError) as e:
        raise InputError(f"{what} {shown(str(path))[:200]!r} cannot be resolved: {e}",
                         "give a path without symlink loops") from e
    if not within(p, allowed):
        raise ForbiddenPathError(f"{what} {shown(str(path))[:200]!r} is outside the folders this server may use",
                                 "use a path under: " + ", ".join(shown(str(r)) for r in roots))
    if p.suffix.lower() == ".vrt" and p.is_file():
        bad = [s for s in vrt_sources(p) if not within(s, allowed)]
        if bad:
            raise ForbiddenPathError(f"{shown(p.name)} reads {shown(str(bad[0]))!r}, outside the folders this "
                                     "server may use",
                                     "keep the rasters (and the files a VRT references) under the allowed folders")
    return p


def check_sources(path: str | Path) -> None:
    """:func:`check_read` for a raster (kept for callers that only need the check)."""
    check_read(path, "raster")


#: errno values that mean "no room to write" (disk full, quota, the file size limit).
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DIR_FD = {os.open, os.rename, os.unlink, os.stat} <= os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


def write_error(e: OSError, path: str | Path, what: str) -> WriteError:
    """A one-line :class:`WriteError` for an OS failure writing ``path`` (NoSpaceError when the disk is full)."""
    name = shown(str(path))[:200]
    if e.errno in NO_SPACE:
        return NoSpaceError(f"cannot write {what} {name!r}: {e.strerror or 'no space left'}",
                            "free disk space (or write to another folder) and retry")
    if isinstance(e, IsADirectoryError) or e.errno == errno.EISDIR:
        return WriteError(f"cannot write {what} {name!r}: a folder of that name is in the way",
                          "give a file name that is not a folder")
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WriteError(f"cannot write {what} {name!r}: permission denied (read-only)",
                          "give a folder and file this server may write")
    if isinstance(e, (FileNotFoundError, NotADirectoryError)):
        return WriteError(f"cannot write {what} {name!r}: its folder does not exist (any more)",
                          "give an existing folder, or one the server may create")
    return WriteError(f"cannot write {what} {name!r}: {e.strerror or e}", "choose another output path")


def make_folder(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` (and parents) if needed; with roots active it must resolve under them, before and after."""
    p = check_read(path, what)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise WriteError(f"cannot use {what} {shown(str(path))[:200]!r}: a file of that name is in the way",
                         "give a folder path (or remove the file)") from e
    except OSError as e:
        raise write_error(e, path, what) from e
    return check_read(p, what)  # re-check: a symlink put in the way meanwhile cannot lead out


@contextmanager
def output_file(path: str | Path, what: str = "output file") -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; on success it is renamed over ``path``.

    The final name is never opened, so a symlink there is replaced, not written through; the
    temporary name is created exclusively (``O_EXCL``) relative to the folder's descriptor,
    which is opened (without following a symlink) after the folder was checked against the
    roots and checked again through the descriptor. An existing folder or read-only file of
    that name is refused. Every OS failure (disk full, the folder gone) becomes a
    :class:`WriteError`; nothing half-written is left behind.
    """
    target = Path(path).expanduser()
    folder, name = check_read(target.parent, what), target.name
    if not name or name in (".", ".."):
        raise InputError(f"{what} {shown(str(path))[:200]!r} names no file", "give a file path")
    suffix = target.suffix if len(target.suffix) <= 16 else ""
    tmp = f".{name[:100]}.{secrets.token_hex(6)}.tmp{suffix}"
    dfd: int | None = None
    created = False
    try:
        if _DIR_FD:
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
            _recheck_fd(dfd, folder, what)
        _refuse_existing(folder, name, dfd, what, path)
        fd = os.open(tmp if dfd is not None else folder / tmp,
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666, dir_fd=dfd)
        os.close(fd)
        created = True
        yield folder / tmp
        if dfd is not None:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        else:
            os.replace(folder / tmp, folder / name)
            check_read(folder / name, what)
        created = False
    except OSError as e:
        if isinstance(e, GeoVecError):
            raise
        raise write_error(e, path, what) from e
    finally:
        if created:
            try:
                os.unlink(tmp if dfd is not None else folder / tmp, dir_fd=dfd)
            except OSError:
                pass
        if dfd is not None:
            os.close(dfd)


def _recheck_fd(dfd: int, folder: Path, what: str) -> None:
    """The folder opened is the one checked (not a symlink or another folder swapped in since)."""
    st, want = os.fstat(dfd), os.stat(folder)
    if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
        raise WriteError(f"{what} folder {shown(str(folder))[:200]!r} changed while it was being opened",
                                 "retry; do not replace output folders while GeoVec writes to them")


def _refuse_existing(folder: Path, name: str, dfd: int | None, what: str, path: str | Path) -> None:
    """WriteError if ``name`` is a folder or a read-only file (a symlink is fine: it gets replaced)."""
    try:
        st = os.stat(name if dfd is not None else folder / name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise write_error(IsADirectoryError(errno.EISDIR, "is a folder"), path, what)
    if stat.S_ISREG(st.st_mode) and not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise write_error(PermissionError(errno.EACCES, "read-only"), path, what)
