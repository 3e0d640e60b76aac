"""The HTTP security matrix and a bounded schemathesis run with every check on.

Security: no token, a wrong token, a foreign Host, a CORS preflight, an oversized
body (declared and streamed), a body that is not JSON, a wrong method; the token
appears in no console output or log. Conformance: every operation of the committed
OpenAPI document, generated requests checked with all of schemathesis' checks. Two
semantic checks the document cannot state are the exceptions: whether ``image_b64``
holds a decodable PNG/JPEG (its 422 ``bad_input`` "not a readable image"), and whether
``vector_b64`` holds base64 of finite little-endian float32 values (its 422 ``bad_input``
naming ``vector_b64``; the document states the encoding in the field's description).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import positive_data_acceptance

from tests.backend.serverproc import ServerProc

OPENAPI = Path(__file__).resolve().parents[2] / "backend" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
OPERATIONS = [r.ok() for r in SCHEMA.get_all_operations()]
MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    root = tmp_path_factory.mktemp("http-matrix")
    server = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir],
                        env={"GEOVEC_MAX_BODY": str(64 * 1024)}).start()
    yield server
    server.stop()


def _security_cases(srv: ServerProc) -> list[tuple[str, str, str, dict, int]]:
    port = srv.url.rsplit(":", 1)[1]
    good = {"Authorization": f"Bearer {srv.token}"}
    return [
        ("no token", "GET", "/v1/jobs", {}, 401),
        ("wrong token", "GET", "/v1/jobs", {"headers": {"Authorization": "Bearer nope"}}, 401),
        ("token without Bearer", "GET", "/v1/jobs", {"headers": {"Authorization": srv.token}}, 401),
        ("foreign Host", "GET", "/v1/jobs", {"headers": {**good, "Host": f"evil.example:{port}"}}, 403),
        ("rebinding Host", "GET", "/v1/health", {"headers": {"Host": f"127.0.0.1.evil.example:{port}"}}, 403),
        ("CORS preflight", "OPTIONS", "/v1/search", {"headers": {
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"}}, 401),
        ("declared body over cap", "POST", "/v1/search", {"headers": good, "content": b"x" * (70 * 1024)}, 413),
        ("streamed body over cap", "POST", "/v1/search", {"headers": good,
                                                          "content": iter([b"x" * 16384] * 6)}, 413),
        ("not JSON", "POST", "/v1/search", {"headers": {**good, "Content-Type": "application/json"},
                                            "content": b"{nope"}, 422),
        ("wrong method", "PUT", "/v1/indexes", {"headers": good}, 405),
    ]


def test_security_matrix(srv: ServerProc, matrix) -> None:
    documented = json.loads(OPENAPI.read_text())["paths"]
    bad = []
    for name, method, path, kw, want in _security_cases(srv):
        r = httpx.request(method, srv.url + path, timeout=30, **kw)
        problems = []
        if r.status_code != want:
            problems.append(f"status {r.status_code}")
        if "access-control-allow-origin" in r.headers:
            problems.append("CORS header")
        try:
            body = r.json()
            if set(body) != {"error", "detail", "hint"}:
                problems.append("not an ErrorBody")
        except ValueError:
            problems.append("not JSON")
        if want == 405:
            allowed = {m.strip() for m in r.headers.get("allow", "").split(",")}
            if allowed != {m.upper() for m in documented[path]}:
                problems.append(f"Allow {allowed}")
        matrix.add("http security", name, "ok" if not problems else ", ".join(problems))
        if problems:
            bad.append((name, problems, r.text[:200]))
    leaked = srv.token in srv.console or srv.token in srv.log_text
    matrix.add("http security", "token in no output or log", "leaked" if leaked else "ok")
    assert not bad, bad
    assert not leaked


def _semantic_error(response, field: str) -> bool:  # noqa: ANN001 - a schemathesis Response
    """A 422 ``bad_input`` about ``field``'s content (what the schema cannot state), nothing else."""
    if response.status_code != 422:
        return False
    body = json.loads(response.content or b"{}")
    return body.get("error") == "bad_input" and field in body.get("detail", "")


@pytest.mark.slow
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_schemathesis_all_checks(srv: ServerProc, operation, matrix) -> None:  # noqa: ANN001
    headers = {"Authorization": f"Bearer {srv.token}"}
    failures: list[str] = []

    def acceptance(ctx, response, case):  # noqa: ANN001 - schemathesis check signature
        if case.operation.label == "POST /v1/embed" and _semantic_error(response, "image"):
            return True
        body = case.body if isinstance(case.body, dict) else {}
        if body.get("vector_b64") is not None and _semantic_error(response, "vector_b64"):
            return True
        return positive_data_acceptance(ctx, response, case)

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case) -> None:  # noqa: ANN001
        response = case.call(base_url=srv.url, headers=headers, timeout=120)
        try:
            case.validate_response(response, excluded_checks=[positive_data_acceptance],
                                   additional_checks=[acceptance], headers=headers)
        except Exception as e:  # noqa: BLE001 - collect, report all at the end
            failures.append(f"{type(e).__name__}: {str(e)[:300]}")

    run()
    matrix.add("schemathesis (all checks)", operation.label, "ok" if not failures else failures[0][:60])
    assert srv.proc is not None and srv.proc.poll() is None, "the server died"
    assert not failures, failures[:3]
