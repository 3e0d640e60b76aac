"""The plugin zip: what QGIS runs plus an installable backend, a README whose links resolve, no training/."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_zip_ships_the_plugin_and_backend_only_and_the_readme_resolves(tmp_path: Path) -> None:
    out = tmp_path / "geovec.zip"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_package.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    names = set(zipfile.ZipFile(out).namelist())
    assert {"geovec/plugin/main.py", "geovec/backend/cli/main.py", "geovec/README.md", "geovec/pyproject.toml"} <= names
    assert not [n for n in names if n.startswith(("geovec/training/", "geovec/tests/", "geovec/benchmarks/",
                                                  "geovec/scripts/")) or "__pycache__" in n]
    zipfile.ZipFile(out).extractall(tmp_path / "x")
    plugin = tmp_path / "x" / "geovec"
    links = re.findall(r"\]\(([^)#\s]+)", (plugin / "README.md").read_text())
    images = [t for t in links if t.endswith((".png", ".jpg", ".svg", ".gif"))]
    assert images and all((plugin / t).is_file() for t in links if "://" not in t), links
    meta = tomllib.loads((plugin / "pyproject.toml").read_text())
    assert not [p for p in meta["tool"]["setuptools"]["packages"] if "training" in p]
    assert "geovec.commands" not in meta["project"].get("entry-points", {})
    # "Set up backend" runs `pip install <plugin folder>`: the folder must build as it is
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "wheel"), str(plugin)], capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    files = zipfile.ZipFile(next((tmp_path / "wheel").glob("geovec-*.whl"))).namelist()
    assert "geovec/backend/cli/main.py" in files and not [f for f in files if f.startswith("geovec/training")]
