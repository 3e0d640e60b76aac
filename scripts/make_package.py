"""Build the installable QGIS plugin zip (``make package`` -> dist/geovec.zip).

The zip holds one top folder ``geovec/`` with what the plugin needs (root
``__init__.py``, ``metadata.txt``, ``plugin/``, ``resources/``, LICENSE/README)
plus the pure-Python backend sources and ``pyproject.toml``, so that
"Set up backend" (or ``pip install <plugin folder>``) can install the backend
from the installed plugin itself. Never tests, virtual environments or caches.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = "geovec"
FILES = ["__init__.py", "metadata.txt", "pyproject.toml", "LICENSE", "README.md"]
TREES = ["plugin", "resources", "backend", "training"]
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "tests", "artifacts"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".so", ".orig", ".rej", ".swp"}
REQUIRED_METADATA = ["name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "repository", "tracker", "homepage", "icon", "category", "tags", "experimental"]
log = logging.getLogger("make_package")


def check_metadata(path: Path) -> configparser.SectionProxy:
    """Parse metadata.txt; raise ValueError naming any missing field the plugin repository requires."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    if "general" not in parser:
        raise ValueError(f"{path} has no [general] section")
    general = parser["general"]
    missing = [k for k in REQUIRED_METADATA if not general.get(k, "").strip()]
    if missing:
        raise ValueError(f"{path} misses {', '.join(missing)}; the QGIS plugin repository requires them")
    if not (ROOT / general["icon"]).is_file():
        raise ValueError(f"metadata icon {general['icon']} does not exist under {ROOT}")
    return general


def package_files(root: Path = ROOT) -> list[Path]:
    """Files that go into the zip, relative to ``root``."""
    out = [Path(f) for f in FILES if (root / f).is_file()]
    for tree in TREES:
        for path in sorted((root / tree).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not SKIP_PARTS & set(rel.parts) and path.suffix not in SKIP_SUFFIXES:
                out.append(rel)
    return out


def build(out: Path, root: Path = ROOT) -> Path:
    """Write the zip to ``out`` and return it."""
    check_metadata(root / "metadata.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    files = package_files(root)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            zf.write(root / rel, f"{TOP}/{rel.as_posix()}")
    log.info("wrote %s (%d files, %.0f KiB)", out, len(files), out.stat().st_size / 1024)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist" / "geovec.zip"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = build(Path(args.out))
    except (OSError, ValueError) as e:
        log.error("packaging failed: %s", e)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
