"""Build the installable QGIS plugin zip (``make package`` -> dist/geovec.zip).

The zip holds one top folder ``geovec/`` with what QGIS runs (root
``__init__.py``, ``metadata.txt``, ``plugin/``, ``resources/``, LICENSE) plus
the pure-Python backend sources and a ``pyproject.toml`` for the backend alone,
so that "Set up backend" (or ``pip install <plugin folder>``) installs the
backend from the installed plugin itself; and the README with every file it
links to (its images). Never ``training/`` (``pip install geovec[train]`` from a
source checkout has it), tests, virtual environments or caches.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = "geovec"
FILES = ["__init__.py", "metadata.txt", "LICENSE", "README.md"]
TREES = ["plugin", "resources", "backend"]
#: pyproject.toml lines and tables that concern the training package, left out of the zip's copy
NOT_SHIPPED = "geovec.training"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
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


def readme_links(root: Path = ROOT) -> list[Path]:
    """Local files the README links to (images, docs); ValueError naming a missing one."""
    out = []
    for target in LINK.findall((root / "README.md").read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        rel = Path(target)
        if not (root / rel).is_file():
            raise ValueError(f"README.md links to {target}, which does not exist")
        out.append(rel)
    return sorted(set(out))


def backend_pyproject(text: str) -> str:
    """``pyproject.toml`` without the training package: its packages, package data and commands."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = NOT_SHIPPED in line or line.strip() == '[project.entry-points."geovec.commands"]'
            if skipping and out and out[-1].startswith("#"):
                out.pop()  # the table's comment
        if skipping or NOT_SHIPPED in line:
            continue
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def build(out: Path, root: Path = ROOT) -> Path:
    """Write the zip to ``out`` and return it."""
    check_metadata(root / "metadata.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(set(package_files(root)) | set(readme_links(root)))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            zf.write(root / rel, f"{TOP}/{rel.as_posix()}")
        zf.writestr(f"{TOP}/pyproject.toml", backend_pyproject((root / "pyproject.toml").read_text(encoding="utf-8")))
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
