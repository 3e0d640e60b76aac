"""The fault-injection matrix: every test adds rows, the run ends with a one-screen summary.

Rows are (area, case, outcome): ``ok`` when the product behaved (a clear error, nothing
lost, no crash), anything else is a defect and the test asserting it fails too.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

_ROWS: list[tuple[str, str, str]] = []


class Matrix:
    """Collects the matrix rows of one test."""

    def add(self, area: str, case: str, outcome: str = "ok") -> None:
        _ROWS.append((area, case, outcome))


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    return Matrix()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    by_area: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for area, case, outcome in _ROWS:
        by_area[area].append((case, outcome))
    tr = terminalreporter
    tr.write_sep("=", "reliability matrix")
    tr.write_line(f"{'area':<26}{'cases':>6}{'ok':>6}{'bad':>6}  failing cases")
    for area, rows in by_area.items():
        bad = [c for c, o in rows if o != "ok"]
        tr.write_line(f"{area:<26}{len(rows):>6}{len(rows) - len(bad):>6}{len(bad):>6}  {', '.join(bad[:4])[:60]}")
    total_bad = sum(1 for *_, o in _ROWS if o != "ok")
    tr.write_line(f"{'total':<26}{len(_ROWS):>6}{len(_ROWS) - total_bad:>6}{total_bad:>6}")


