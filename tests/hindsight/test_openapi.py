"""The OpenAPI document matches the server: schemathesis, run against ``hindsight serve`` with
bounded examples, finds no server error and no answer the document does not describe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hindsight.api.app import make_app
from hindsight.api.context import ApiContext
from hindsight.api.openapi import document
from hindsight.cli.main import main
from hindsight.config import default_config, load_config
from hindsight.tokens import Role, TokenStore
from tests.daemon_process import serving

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


def test_every_route_is_documented(tmp_path: Path) -> None:
    documented = {
        (method.upper(), path) for path, ops in document()["paths"].items() for method in ops
    }
    app = make_app(ApiContext(default_config(tmp_path)))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert served - {("GET", "/api/ws")} == documented, "the WebSocket is described in USER.md"


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    (app / "conocimiento_consolidado.json").write_text('{"faq": []}\n')
    assert main(["init", "--protect", str(app)]) == 0
    assert main(["backup", "create"]) == 0
    config = load_config(workdir / "hindsight.toml")
    _, token = TokenStore(config.storage.repository).create(Role.OPERATOR, "schemathesis")
    with serving(workdir) as served:
        run = subprocess.run(
            [SCHEMATHESIS, "run", f"{served.base}/api/openapi.json", "--checks", CHECKS,
             "--max-examples", "8", "--seed", "7", "-H", f"Authorization: Bearer {token}"],
            cwd=workdir, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:]
    json.dumps(document())  # the document itself is JSON
