"""``hindsight serve`` as a real process: it listens, answers with a token, stops cleanly."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.tokens import Role, TokenStore
from tests.daemon_process import HINDSIGHT, http_json, running_daemon, serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_over_http_and_stops_on_sigterm(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    assert main(["init", "--protect", str(app)]) == 0
    config = load_config(workdir / "hindsight.toml")
    _, token = TokenStore(config.storage.repository).create(Role.VIEWER, "ops")
    with serving(workdir) as served:
        health = http_json(f"{served.base}/health")
        unauthorised = http_json(f"{served.base}/api/status")
        status = http_json(f"{served.base}/api/status", token)
    assert health == (200, {"status": "ok"})
    assert unauthorised[0] == 401
    assert status[0] == 200 and status[1]["repository"] == str(config.storage.repository)
    assert f"listening on http://127.0.0.1:{served.port}" in served.stderr


def test_serve_refuses_a_port_in_use_with_one_line(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    assert main(["init", "--protect", str(app)]) == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [HINDSIGHT, "serve", "--port", str(port)],
            cwd=workdir, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "api.crt", directory / "api.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_serve_speaks_https_with_a_certificate_and_key(workdir: Path) -> None:
    import ssl

    app = workdir / "app"
    app.mkdir()
    assert main(["init", "--protect", str(app)]) == 0
    cert, key = self_signed(workdir)
    with serving(workdir, "--tls-cert", str(cert), "--tls-key", str(key)) as served:
        trusted = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(
            f"https://127.0.0.1:{served.port}/health", context=trusted, timeout=10
        ) as response:
            health = response.status, json.loads(response.read())
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{served.port}/health", timeout=10)
            plain = "answered"
        except (urllib.error.URLError, ConnectionError, OSError):
            plain = "refused"
    assert health == (200, {"status": "ok"})
    assert plain == "refused", "no plain HTTP beside HTTPS"
    assert f"listening on https://127.0.0.1:{served.port}" in served.stderr


def test_serve_needs_both_tls_files(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    assert main(["init", "--protect", str(app)]) == 0
    cert, _ = self_signed(workdir)
    done = subprocess.run(
        [HINDSIGHT, "serve", "--port", str(free_port()), "--tls-cert", str(cert)],
        cwd=workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "HTTPS needs both --tls-cert and --tls-key" in done.stderr


def test_the_daemon_serves_https_from_the_config(workdir: Path) -> None:
    import ssl

    app = workdir / "app"
    app.mkdir()
    assert main(["init", "--api", "--protect", str(app)]) == 0
    cert, key = self_signed(workdir)
    port = free_port()
    toml = workdir / "hindsight.toml"
    head, _, api = toml.read_text().partition("[api]\n")
    api = api.replace("port = 3000", f"port = {port}", 1)
    api = api.replace('tls_cert = ""', f'tls_cert = "{cert.name}"', 1)
    api = api.replace('tls_key = ""', f'tls_key = "{key.name}"', 1)
    toml.write_text(f"{head}[api]\n{api}")
    trusted = ssl.create_default_context(cafile=str(cert))
    with running_daemon(workdir):
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"https://127.0.0.1:{port}/health"
                with urllib.request.urlopen(url, context=trusted, timeout=10) as response:
                    health = response.status
                break
            except OSError:
                assert time.monotonic() < deadline, "no HTTPS answer"
                time.sleep(0.2)
    assert health == 200
