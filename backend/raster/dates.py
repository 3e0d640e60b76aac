"""Acquisition dates of scenes: from raster metadata, sensor product ids, file names, or the user.

Where a date comes from is recorded with it (``source``), in this order of trust:

1. ``--date`` given by the user (``user``);
2. ``--date-from-name PATTERN`` (``name-pattern``), a strftime-like pattern such as ``%Y%m%d``;
3. an acquisition tag in the GDAL metadata (``metadata:ACQUISITIONDATETIME``, ``DATE_ACQUIRED``,
   ``SENSING_TIME``, ``PRODUCT_START_TIME`` ...);
4. a sensor product id in a file name: Landsat Collection ids (``LC08_L1TP_..._YYYYMMDD_...``),
   pre-collection Landsat scene ids (``LC8PPPRRRYYYYDDD...``), Sentinel-2 (``..._YYYYMMDDTHHMMSS_...``)
   (``product-id:landsat`` / ``product-id:sentinel-2``);
5. a date in a file name (``YYYY-MM-DD``, ``YYYYMMDD``, with an optional ``THHMMSS``) (``name``);
6. ``TIFFTAG_DATETIME`` (``metadata:TIFFTAG_DATETIME``) - often the time the file was written, not
   the acquisition, so it comes last.

Dates are kept as ISO 8601 text: ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS`` (UTC, no zone suffix).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)

#: GDAL metadata keys naming an acquisition time, most specific first (any domain prefix is ignored).
ACQUISITION_KEYS = ("ACQUISITIONDATETIME", "ACQUISITION_DATETIME", "ACQUISITION_DATE", "DATE_ACQUIRED",
                    "DATATAKE_1_DATATAKE_SENSING_START", "SENSING_TIME", "SENSING_START", "PRODUCT_START_TIME",
                    "SCENE_CENTER_TIME_DATE", "IMAGE_DATE", "DATETIME_ORIGINAL")
FILE_TIME_KEY = "TIFFTAG_DATETIME"
_YEARS = (1950, 2100)

_LANDSAT_C = re.compile(r"(?<![A-Z0-9])L[COTEM]0\d_L[0-9A-Z]{3}_\d{6}_(\d{8})_\d{8}_\d{2}_[A-Z0-9]{2}", re.I)
_LANDSAT_PRE = re.compile(r"(?<![A-Z0-9])L[COTEM]\d\d{6}(\d{4})(\d{3})[A-Z]{3}\d{2}", re.I)
_SENTINEL2 = re.compile(r"(?<![A-Z0-9])S2[ABCD]_MSI[A-Z0-9]{3}_(\d{8}T\d{6})_", re.I)
_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)([-_.]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])"
                        r"(?:[T_-]?([01]\d|2[0-3])[:]?([0-5]\d)[:]?([0-5]\d))?(?!\d)")


@dataclass(frozen=True)
class SceneDate:
    """A scene's acquisition date (ISO text) and where it came from."""

    acquired: str
    source: str

    @property
    def when(self) -> datetime:
        return parse_when(self.acquired)


def _iso(dt: datetime, with_time: bool) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S" if with_time else "%Y-%m-%d")


def _sane(dt: datetime) -> bool:
    return _YEARS[0] <= dt.year <= _YEARS[1]


def parse_when(text: str) -> datetime:
    """An ISO-like date (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, ``YYYY-MM-DD[T ]HH:MM[:SS][Z|+00:00]``,
    ``YYYY:MM:DD HH:MM:SS``) as a naive UTC datetime (the start of a partial date).

    Raises:
        InputError: the text is not such a date.
    """
    t = str(text).strip()
    m = re.fullmatch(r"(\d{4})[:-](\d{2})[:-](\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
                     r"(Z|[+-]\d{2}:?\d{2})?", t)
    try:
        if m:
            y, mo, d, hh, mm, ss, tz = m.groups()
            dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
            if tz and tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                off = timedelta(hours=int(tz[1:3]), minutes=int(tz[-2:]))
                dt = dt - sign * off
            return dt
        m = re.fullmatch(r"(\d{4})(?:-(\d{2}))?", t)
        if m:
            return datetime(int(m.group(1)), int(m.group(2) or 1), 1)
    except ValueError:
        pass
    raise InputError(f"{text!r} is not a date", "write dates as YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS")


def date_range(text: str) -> tuple[datetime, datetime]:
    """The half-open interval ``[start, end)`` a date text covers: ``2016`` is the year, ``2016-01`` the month,
    ``2016-01-05`` the day, a time the second; ``A/B`` is from A's start to B's end."""
    t = str(text).strip()
    if "/" in t:
        a, _, b = t.partition("/")
        start, end = date_range(a)[0], date_range(b)[1]
        if end <= start:
            raise InputError(f"date range {text!r} ends before it starts", "write it as EARLIER/LATER")
        return start, end
    start = parse_when(t)
    if re.fullmatch(r"\d{4}", t):
        return start, start.replace(year=start.year + 1)
    if re.fullmatch(r"\d{4}-\d{2}", t):
        return start, (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        return start, start + timedelta(days=1)
    return start, start + timedelta(seconds=1)


def normalise(text: str, source: str) -> SceneDate:
    """A user-given date as a :class:`SceneDate` (InputError when it is not a date)."""
    dt = parse_when(text)
    with_time = bool(re.search(r"\d[T ]\d", str(text)))
    return SceneDate(_iso(dt, with_time), source)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A ``--date-from-name`` pattern (strftime codes ``%Y %m %d %H %M %S %j %y``, other text literal) as a regex.

    Raises:
        InputError: the pattern has no year, or an unknown ``%`` code.
    """
    codes = {"Y": r"(?P<Y>\d{4})", "y": r"(?P<y>\d{2})", "m": r"(?P<m>\d{2})", "d": r"(?P<d>\d{2})",
             "H": r"(?P<H>\d{2})", "M": r"(?P<M>\d{2})", "S": r"(?P<S>\d{2})", "j": r"(?P<j>\d{3})"}
    out, i, seen = [], 0, set()
    while i < len(pattern):
        c = pattern[i]
        if c == "%" and i + 1 < len(pattern):
            code = pattern[i + 1]
            if code not in codes or code in seen:
                raise InputError(f"--date-from-name {pattern!r}: %{code} is unknown or repeated",
                                 "use %Y %y %m %d %j %H %M %S once each, e.g. '%Y%m%d' or 'L7_%Y-%m'")
            seen.add(code)
            out.append(codes[code])
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    if not seen & {"Y", "y"}:
        raise InputError(f"--date-from-name {pattern!r} has no year", "include %Y (or %y), e.g. '%Y%m%d'")
    return re.compile("".join(out))


def date_from_pattern(name: str, pattern: str | re.Pattern[str]) -> SceneDate | None:
    """The date ``pattern`` (see :func:`pattern_regex`) finds in ``name``; None when it does not match."""
    rx = pattern_regex(pattern) if isinstance(pattern, str) else pattern
    m = rx.search(name)
    if m is None:
        return None
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    try:
        year = int(g["Y"]) if "Y" in g else 2000 + int(g["y"])
        if "j" in g:
            dt = datetime(year, 1, 1) + timedelta(days=int(g["j"]) - 1)
        else:
            dt = datetime(year, int(g.get("m", 1)), int(g.get("d", 1)))
        dt = dt.replace(hour=int(g.get("H", 0)), minute=int(g.get("M", 0)), second=int(g.get("S", 0)))
    except ValueError:
        return None
    if not _sane(dt):
        return None
    return SceneDate(_iso(dt, "H" in g), "name-pattern")


def date_from_name(name: str) -> SceneDate | None:
    """A date from a sensor product id in ``name``, else a plain date in it; None when there is none."""
    m = _LANDSAT_C.search(name)
    if m:
        try:
            return SceneDate(_iso(datetime.strptime(m.group(1), "%Y%m%d"), False), "product-id:landsat")
        except ValueError:
            pass
    m = _LANDSAT_PRE.search(name)
    if m:
        try:
            dt = datetime(int(m.group(1)), 1, 1) + timedelta(days=int(m.group(2)) - 1)
            if _sane(dt) and 1 <= int(m.group(2)) <= 366:
                return SceneDate(_iso(dt, False), "product-id:landsat")
        except ValueError:
            pass
    m = _SENTINEL2.search(name)
    if m:
        try:
            return SceneDate(_iso(datetime.strptime(m.group(1).upper(), "%Y%m%dT%H%M%S"), True),
                             "product-id:sentinel-2")
        except ValueError:
            pass
    for m in _NAME_DATE.finditer(name):
        y, _, mo, d, hh, mm, ss = m.groups()
        try:
            dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        except ValueError:
            continue
        if _sane(dt):
            return SceneDate(_iso(dt, hh is not None), "name")
    return None


def date_from_tags(tags: dict[str, str]) -> SceneDate | None:
    """A date from GDAL metadata ``tags`` (all domains merged): acquisition keys, else ``TIFFTAG_DATETIME``."""
    upper = {k.upper().split(":")[-1]: v for k, v in tags.items()}
    for key in (*ACQUISITION_KEYS, FILE_TIME_KEY):
        value = upper.get(key)
        if not value:
            continue
        try:
            dt = parse_when(str(value).strip().split(",")[0])
        except InputError:
            log.debug("metadata %s=%r is not a date", key, value)
            continue
        if _sane(dt):
            with_time = bool(re.search(r"\d[T ]\d", str(value)))
            return SceneDate(_iso(dt, with_time), f"metadata:{key}")
    return None


def raster_tags(path: str) -> dict[str, str]:
    """Every GDAL metadata item of ``path`` (default domain, IMAGERY, and per-band), merged; {} if unreadable."""
    import rasterio

    out: dict[str, str] = {}
    try:
        with rasterio.open(path) as ds:
            for ns in (None, "IMAGERY"):
                try:
                    out.update({k: str(v) for k, v in ds.tags(ns=ns).items()} if ns else ds.tags())
                except Exception:  # noqa: BLE001 - a missing domain
                    continue
            if ds.count:
                for k, v in ds.tags(1).items():
                    out.setdefault(k, str(v))
    except Exception as e:  # noqa: BLE001 - the scan reports unreadable files; a date is optional
        log.debug("no metadata from %s: %s", path, e)
    return out


def scene_date(sources: Sequence[str], name: str, *, date: str | None = None,
               pattern: str | None = None) -> SceneDate | None:
    """The acquisition date of a scene made of ``sources`` named ``name`` (see the module docstring).

    Raises:
        InputError: ``date`` is not a date, or ``pattern`` is malformed.
    """
    if date is not None:
        return normalise(date, "user")
    names = [name, *(Path(s).name for s in sources)]
    if pattern is not None:
        rx = pattern_regex(pattern)
        for n in names:
            found = date_from_pattern(n, rx)
            if found is not None:
                return found
        log.info("--date-from-name %r matches none of %s", pattern, names)
    tags: list[dict[str, str]] = [raster_tags(s) for s in sources[:4]]
    late: SceneDate | None = None
    for t in tags:
        found = date_from_tags(t)
        if found is not None and found.source != f"metadata:{FILE_TIME_KEY}":
            return found
        late = late or found
    for n in [*(Path(s).stem for s in sources), name]:
        found = date_from_name(n)
        if found is not None:
            return found
    return late
