"""The command line takes what analysts type: ``geovec index`` a single raster file or a list of them
(nothing else in the index is touched), and the typo hint covers every command (tiny model, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geovec.backend.cli import main
from geovec.backend.demo import write_sample_folder


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_folder(tmp_path_factory.mktemp("cli-input") / "rasters", size=64)


def _scenes(capsys, idx: Path) -> set[str]:
    assert main(["info", "--index", str(idx), "--json"]) == 0
    return {s["name"] for s in json.loads(capsys.readouterr().out)["extra"]["scene_list"]}


def test_index_takes_a_file_or_a_file_list(sample: Path, tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    idx = tmp_path / "idx"
    model = ["--model", str(tiny_model_dir), "--dtype", "fp32", "--no-progress", "--tile-size", "32"]
    assert main(["index", str(sample / "lake_utm17n.tif"), "--index", str(idx), *model]) == 0
    assert "1 scene(s) indexed" in capsys.readouterr().out
    assert _scenes(capsys, idx) == {"lake_utm17n"}
    # a list of files adds them and removes nothing (the lake scene is not in this list)
    files = [str(sample / "forest_albers.tif"), str(sample / "town_ncsp_ftUS.tif")]
    assert main(["index", *files, "--index", str(idx), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 scene(s) indexed" in out and "0 removed" in out
    assert _scenes(capsys, idx) == {"lake_utm17n", "forest_albers", "town_ncsp_ftUS"}
    # the same file again: unchanged
    assert main(["index", str(sample / "lake_utm17n.tif"), "--index", str(idx), "--no-progress"]) == 0
    assert "0 scene(s) indexed, 1 unchanged" in capsys.readouterr().out
    # bad paths: one line each, nothing touched
    for argv, words in ([str(sample / "nope.tif")], "does not exist"), ([str(sample), files[0]], "is a folder"):
        code = main(["index", *argv, "--index", str(idx), "--no-progress"])
        err = capsys.readouterr().err
        assert code != 0 and err.count("\n") == 1 and words in err and "Traceback" not in err, err
    assert _scenes(capsys, idx) == {"lake_utm17n", "forest_albers", "town_ncsp_ftUS"}


def test_typo_hint_covers_every_command(capsys) -> None:
    from geovec.backend.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = sorted(sub.choices)
    assert {"search", "index", "info", "classify", "fewshot", "refine", "locate", "ask", "serve"} <= set(commands)
    for name in commands:
        typo = name[:-1] if len(name) > 4 else name + "x"  # 'serch'-like: one letter off
        typo = name[0] + name[2:] if name == "search" else typo
        code = main([typo])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert f"did you mean {name!r}" in err, (typo, err)
        assert all(f"'{c}'" in err for c in commands), err  # the full list, not only the imported few
