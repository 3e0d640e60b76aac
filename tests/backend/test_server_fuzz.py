"""Property-based fuzzing of the whole HTTP API from its committed OpenAPI document (schemathesis).

Every operation in ``backend/openapi.json`` gets ``MAX_EXAMPLES`` generated requests
(valid and invalid bodies, paths and queries) sent with the token to a live
``geovec serve`` whose file access is confined to a temp folder
(GEOVEC_ALLOWED_ROOTS). Check: no server error. The single exception allowed is
a 503 ``model_unavailable`` (a generated string that looks like a hub id, with
the hub offline): that is the documented answer, not a crash.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from tests.backend.serverproc import ServerProc

OPENAPI = Path(__file__).resolve().parents[2] / "backend" / "openapi.json"
MAX_EXAMPLES = 25
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
OPERATIONS = [r.ok() for r in SCHEMA.get_all_operations()]


def no_server_error(ctx, response, case):  # noqa: ANN001 - schemathesis check signature
    """not_a_server_error, except the documented 503 when no model can be had."""
    if response.status_code == 503:
        body = json.loads(response.content or b"{}")
        assert body.get("error") == "model_unavailable", f"503 without model_unavailable: {body}"
        return True
    return not_a_server_error(ctx, response, case)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    root = tmp_path_factory.mktemp("fuzz")
    server = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir]).start()
    yield server
    server.stop()


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_server_error_on_any_generated_request(srv: ServerProc, operation) -> None:  # noqa: ANN001
    headers = {"Authorization": f"Bearer {srv.token}"}
    calls: list[int] = []

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case) -> None:  # noqa: ANN001
        response = case.call(base_url=srv.url, headers=headers, timeout=120)
        calls.append(response.status_code)
        case.validate_response(response, checks=[no_server_error])

    t0 = time.monotonic()
    run()
    assert calls, "no request was generated"
    assert srv.proc is not None and srv.proc.poll() is None, "the server died"
    print(f"{operation.label}: {len(calls)} requests in {time.monotonic() - t0:.1f} s, statuses {sorted(set(calls))}")


def test_the_fuzzed_server_logged_no_unexpected_error(srv: ServerProc) -> None:
    assert "failed unexpectedly" not in srv.log_text
