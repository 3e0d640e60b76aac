"""The path policy in-process: outputs never written through a symlink, files reached from a request (region
layers, ``within`` files) checked under the roots of the running request, the same refusal whether or not
the file exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from geovec.backend.errors import ForbiddenPathError, WriteError
from geovec.backend.paths import check_read, confined, gate, make_folder, output_file
from geovec.backend.regions import LayerBoxes


def test_an_output_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiles.geojson").symlink_to(victim)
    with output_file(out / "tiles.geojson") as tmp:
        assert tmp.parent == out and tmp.name != "tiles.geojson"
        tmp.write_text("new")
    assert victim.read_text() == "keep"
    assert not (out / "tiles.geojson").is_symlink() and (out / "tiles.geojson").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == ["tiles.geojson"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "marks.geojson"
    target.write_text("old")
    with pytest.raises(RuntimeError), output_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["marks.geojson"]


def test_an_output_folder_that_leads_outside_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with confined([root]):
        with pytest.raises(ForbiddenPathError):
            make_folder(root / "link" / "maps")
        with pytest.raises(ForbiddenPathError), output_file(root / "link" / "tiles.geojson"):
            pass
        (root / "file").write_text("x")
        with pytest.raises(WriteError, match="a file of that name"):
            make_folder(root / "file")
    assert list(outside.iterdir()) == []


def test_reached_files_are_checked_under_the_running_requests_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "boxes.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    answers = []
    with confined([root]):
        for name in ("boxes.geojson", "missing.geojson"):
            with pytest.raises(ForbiddenPathError) as e:
                LayerBoxes(outside / name)  # a region layer named by an index's stored spec
            answers.append(str(e.value).replace(name, "NAME"))
            with pytest.raises(ForbiddenPathError):
                check_read(outside / name, "within file")
            with pytest.raises(ForbiddenPathError):
                gate(f"{outside / name}", "labels")
    assert answers[0] == answers[1]
    assert check_read(outside / "boxes.geojson") == outside / "boxes.geojson"  # outside a server: no roots
    assert gate("relative/path", "labels") == "relative/path"  # the library and CLI resolve their own paths
