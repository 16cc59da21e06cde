"""Alerts: conditions from status dicts, dedup and cool-down, and real SMTP and HTTP receivers."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from capture.mongodb import MongoStatus
from compaction.schedule import JobRun, JobStatus
from compaction.storage import StorageReport
from hindsight.alert_conditions import conditions
from hindsight.alerts import (
    CRITICAL,
    FIRING,
    RESOLVED,
    SCHEDULE_GRACE_S,
    WARNING,
    Alert,
    Alerter,
    AlertSettings,
    DeliveryFailed,
    EmailChannel,
    LogChannel,
    Notification,
    WebhookChannel,
    mask_url,
)
from journal.errors import ConfigError

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
SETTINGS = AlertSettings(capture_lag_s=60, quota_warn_percent=90, cooldown_s=3600)

# --- conditions ----------------------------------------------------------------------------


def _backup(backup_id: str, type_: str, verified: bool, verified_at: str | None) -> dict[str, Any]:
    check = {"checksum": "abc", "verified": verified, "verified_at": verified_at}
    return {"backup_id": backup_id, "type": type_, "timestamp": "x", "verification": check}


def healthy() -> dict[str, Any]:
    """A status with nothing wrong, its parts built by the code that builds the real one."""
    hour = timedelta(hours=1)
    jobs = [
        JobStatus(
            name,
            "0 3 * * *",
            JobRun(name, NOW - hour, "ok", NOW - hour, NOW - hour),
            NOW + hour,
            None,
        ).as_dict()
        for name in ("full", "incremental", "verify", "prune")
    ]
    mongo = dataclasses.asdict(MongoStatus(state="streaming", since=T - 3600))
    return {
        "daemon": {"running": True, "pid": 4242},
        "capture": [
            mongo | {"source": "mongodb", "name": "main", "lag_s": 2.0},
            {"source": "filesystem", "name": "app", "state": "watching", "lag_s": 0.1},
        ],
        "jobs": jobs,
        "backups": {
            "count": 2,
            "newest": {
                "full": _backup("full_1", "full", True, "2025-01-15T04:30:00Z"),
                "incremental": _backup("inc_1", "incremental", False, None),  # not verified yet
            },
            "storage": StorageReport(by_kind={"journal": 500}, quota_bytes=1000).to_dict(),
        },
        "sources": {"filesystem": ["/app"], "mongodb": ["mongodb://127.0.0.1/"]},
        "scan_findings": 0,
        "last_recovery": {"operation_id": "recover_20250115_100000", "status": "completed"},
    }


def _job(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(j for j in status["jobs"] if j["job"] == name)


def _last(status: dict[str, Any], name: str, **changes: Any) -> None:
    _job(status, name)["last"].update(changes)


def _capture(status: dict[str, Any], index: int = 0, **changes: Any) -> None:
    status["capture"][index].update(changes)


def _storage(used: int) -> Callable[[dict[str, Any]], None]:
    def change(status: dict[str, Any]) -> None:
        report = StorageReport(by_kind={"journal": used}, quota_bytes=1000)
        status["backups"]["storage"] = report.to_dict()

    return change


def _iso(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat()


Change = Callable[[dict[str, Any]], None]

FIRING_CASES: list[tuple[str, Change, str, str]] = [
    (
        "daemon-down",
        lambda s: s["daemon"].update(running=False),
        "capture_stopped:daemon",
        CRITICAL,
    ),
    (
        "mongo-stopped",
        lambda s: _capture(s, state="stopped"),
        "capture_stopped:mongodb:main",
        CRITICAL,
    ),
    (
        "files-error",
        lambda s: _capture(s, 1, state="error"),
        "capture_stopped:filesystem:app",
        CRITICAL,
    ),
    (
        "mongo-down-long",
        lambda s: _capture(s, state="down", since=T - 61),
        "capture_stopped:mongodb:main",
        CRITICAL,
    ),
    ("lag", lambda s: _capture(s, lag_s=61.0), "capture_lag:mongodb:main", WARNING),
    (
        "history-lost",
        lambda s: _capture(s, alerts=["2025-01-15 11:00:00 change stream history lost (code 286)"]),
        "history_lost:mongodb:main",
        CRITICAL,
    ),
    (
        "other-capture-alert",
        lambda s: _capture(s, alerts=["unreadable"]),
        "capture_alert:mongodb:main",
        WARNING,
    ),
    (
        "full-failed",
        lambda s: _last(s, "full", result="failed", message="disk full"),
        "backup_failed:full",
        CRITICAL,
    ),
    (
        "incremental-failed",
        lambda s: _last(s, "incremental", result="failed"),
        "backup_failed:incremental",
        CRITICAL,
    ),
    ("prune-failed", lambda s: _last(s, "prune", result="failed"), "job_failed:prune", WARNING),
    (
        "verify-metadata",
        lambda s: s["backups"]["newest"].update(
            full=_backup("full_1", "full", False, "2025-01-15")
        ),
        "verification_failed:full",
        CRITICAL,
    ),
    (
        "verify-job",
        lambda s: _last(s, "verify", result="failed"),
        "verification_failed:verify",
        CRITICAL,
    ),
    (
        "overdue",
        lambda s: _job(s, "full").update(overdue_since=_iso(SCHEDULE_GRACE_S + 1)),
        "schedule_missed:full",
        WARNING,
    ),
    (
        "next-due-past",
        lambda s: _job(s, "incremental").update(next_due=_iso(SCHEDULE_GRACE_S + 1)),
        "schedule_missed:incremental",
        WARNING,
    ),
    ("skipped", lambda s: _last(s, "verify", result="skipped"), "schedule_missed:verify", WARNING),
    (
        "history-unreadable",
        lambda s: s["jobs"].append({"job": "*", "cron": "", "last": None, "error": "bad json"}),
        "schedule_history",
        WARNING,
    ),
    ("quota-near", _storage(900), "quota", WARNING),
    ("quota-over", _storage(1001), "quota", CRITICAL),
    ("scan-findings", lambda s: s.update(scan_findings=3), "scan_findings", WARNING),
    (
        "restore-failed",
        lambda s: s["last_recovery"].update(status="failed"),
        "restore_failed",
        CRITICAL,
    ),
]


def test_a_healthy_status_raises_no_alert() -> None:
    assert conditions(healthy(), SETTINGS, T) == []


def test_an_empty_status_raises_no_alert() -> None:
    assert conditions({}, SETTINGS, T) == []


@pytest.mark.parametrize(
    ("change", "key", "severity"),
    [case[1:] for case in FIRING_CASES],
    ids=[case[0] for case in FIRING_CASES],
)
def test_each_condition_raises_its_alert(change: Change, key: str, severity: str) -> None:
    status = healthy()
    change(status)
    alerts = conditions(status, SETTINGS, T)
    assert [(a.key, a.severity) for a in alerts] == [(key, severity)], alerts
    assert alerts[0].summary and "\n" not in alerts[0].summary


QUIET_CASES: list[tuple[str, Change]] = [
    ("mongo-down-briefly", lambda s: _capture(s, state="down", since=T - 59)),
    ("mongo-syncing", lambda s: _capture(s, state="syncing")),
    ("lag-at-threshold", lambda s: _capture(s, lag_s=60.0)),
    ("quota-below-warn", _storage(899)),
    ("overdue-within-grace", lambda s: _job(s, "full").update(overdue_since=_iso(10))),
    ("job-running", lambda s: _last(s, "full", result="running")),
    ("job-interrupted", lambda s: _last(s, "full", result="interrupted")),
    ("job-never-ran", lambda s: _job(s, "full").update(last=None)),
    ("restore-in-progress", lambda s: s["last_recovery"].update(status="in_progress")),
    ("no-daemon-key", lambda s: s.pop("daemon")),
]


@pytest.mark.parametrize("change", [c[1] for c in QUIET_CASES], ids=[c[0] for c in QUIET_CASES])
def test_below_a_threshold_nothing_fires(change: Change) -> None:
    status = healthy()
    change(status)
    assert conditions(status, SETTINGS, T) == []


def test_a_failed_verification_of_a_backup_is_not_also_reported_as_the_job() -> None:
    status = healthy()
    status["backups"]["newest"]["full"] = _backup("full_1", "full", False, "2025-01-15")
    _last(status, "verify", result="failed", message="full_1: checksum mismatch")
    keys = [a.key for a in conditions(status, SETTINGS, T)]
    assert keys == ["verification_failed:full"]


def test_quota_severity_rises_under_one_key_and_the_settings_threshold_counts() -> None:
    status = healthy()
    _storage(800)(status)
    assert conditions(status, SETTINGS, T) == []
    low = dataclasses.replace(SETTINGS, quota_warn_percent=80)
    assert [a.severity for a in conditions(status, low, T)] == [WARNING]


def test_summaries_and_details_mask_credentials_from_the_status() -> None:
    status = healthy()
    _capture(status, state="error", last_error="auth failed for mongodb://app:hunter2@db:27017/")
    alerts = conditions(status, SETTINGS, T)
    text = json.dumps([dataclasses.asdict(a) for a in alerts])
    assert "hunter2" not in text and "mongodb://***@db:27017/" in text, text


@pytest.mark.parametrize(
    ("url", "secrets", "kept"),
    [
        (
            "https://u:pw@hooks.example/h?token=tok123&x=1",
            ["pw", "tok123", "u:"],
            "hooks.example/h",
        ),
        ("https://hooks.slack.com/services/T01/B02/abcdefghijklmnopqrstuvwx", ["abcdefgh"], "T01"),
        ("http://127.0.0.1:8080/plain", [], "http://127.0.0.1:8080/plain"),
    ],
    ids=["credentials-and-query", "slack-path-token", "nothing-secret"],
)
def test_mask_url_hides_tokens_and_keeps_the_place(url: str, secrets: list[str], kept: str) -> None:
    masked = mask_url(url)
    assert kept in masked and not [s for s in secrets if s in masked], masked


@pytest.mark.parametrize(
    "changes",
    [
        {"webhook_format": "xml"},
        {"webhook_url": "ftp://hooks.example/x"},
        {"smtp_host": "mail.example"},
        {"cooldown_s": -1},
        {"quota_warn_percent": 0},
    ],
    ids=["format", "scheme", "no-recipients", "negative-cooldown", "zero-percent"],
)
def test_bad_settings_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AlertSettings(**changes)


def test_settings_repr_hides_the_webhook_url_and_the_password() -> None:
    settings = AlertSettings(webhook_url="https://h.example/?token=tok123", smtp_password="pw42")
    assert "tok123" not in repr(settings) and "pw42" not in repr(settings)


# --- the alerter with in-memory channels ---------------------------------------------------


@dataclass
class MemoryChannel:
    """A channel that keeps what it is sent, or fails while ``failing``."""

    name: str = "memory"
    failing: bool = False
    sent: list[tuple[str, str, float]] = field(default_factory=list)

    async def send(self, notification: Notification) -> None:
        if self.failing:
            raise ConnectionError(f"{self.name} is down")
        self.sent.append((notification.kind, notification.alert.key, notification.at))


A = Alert("capture_lag:mongodb:main", WARNING, "capture is behind", {"lag_s": 90})
B = Alert("quota", CRITICAL, "over quota", {})


async def test_an_alert_is_sent_once_within_the_cooldown_and_reminded_after_it() -> None:
    channel = MemoryChannel()
    alerter = Alerter(SETTINGS, [channel])
    first = await alerter.update([A], T)
    assert [(n.kind, n.alert.key) for n in first] == [(FIRING, A.key)]
    assert await alerter.update([A], T + 3599) == []
    reminder = await alerter.update([A], T + 3600)
    assert [n.kind for n in reminder] == [FIRING]
    assert channel.sent == [(FIRING, A.key, T), (FIRING, A.key, T + 3600)]
    assert alerter.open_alerts == [A]


async def test_a_gone_alert_is_resolved_once_and_a_return_fires_again() -> None:
    channel = MemoryChannel()
    alerter = Alerter(SETTINGS, [channel])
    await alerter.update([A, B], T)
    resolved = await alerter.update([B], T + 1)
    assert [(n.kind, n.alert) for n in resolved] == [(RESOLVED, A)]
    assert await alerter.update([B], T + 2) == []
    assert alerter.open_alerts == [B]
    await alerter.update([A, B], T + 3)
    assert [(k, key) for k, key, _ in channel.sent if key == A.key] == [
        (FIRING, A.key),
        (RESOLVED, A.key),
        (FIRING, A.key),
    ]


async def test_a_change_of_severity_is_sent_at_once() -> None:
    channel = MemoryChannel()
    alerter = Alerter(SETTINGS, [channel])
    await alerter.update([dataclasses.replace(B, severity=WARNING)], T)
    sent = await alerter.update([B], T + 1)
    assert [(n.kind, n.alert.severity) for n in sent] == [(FIRING, CRITICAL)]
    assert await alerter.update([B], T + 2) == []


async def test_a_failing_channel_is_logged_and_retried_while_others_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, bad = MemoryChannel("good"), MemoryChannel("bad", failing=True)
    alerter = Alerter(SETTINGS, [good, bad])
    sent = await alerter.update([A], T)
    assert [n.alert for n in sent] == [A], "delivered to one channel is sent"
    assert "bad could not send firing capture_lag:mongodb:main" in caplog.text
    assert "bad is down" in caplog.text
    bad.failing = False
    await alerter.update([A], T + 10)
    assert bad.sent == [(FIRING, A.key, T + 10)]
    assert good.sent == [(FIRING, A.key, T)], "the working channel keeps its cool-down"


class LeakyChannel:
    """A channel whose error quotes its URL, token and all."""

    name = "leaky"

    async def send(self, notification: Notification) -> None:
        raise ConnectionError("refused by https://hooks.example/in?token=tok123, giving up")


async def test_a_channel_error_is_logged_with_its_urls_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await Alerter(SETTINGS, [LeakyChannel()]).update([A], T)
    assert "refused by https://hooks.example/in?token=***, giving up" in caplog.text, caplog.text


async def test_failing_everywhere_sends_nothing_and_retries_next_update() -> None:
    channel = MemoryChannel(failing=True)
    alerter = Alerter(SETTINGS, [channel])
    assert await alerter.update([A], T) == []
    assert alerter.open_alerts == [A]
    channel.failing = False
    assert [n.kind for n in await alerter.update([A], T + 1)] == [FIRING]


async def test_a_failed_resolution_is_retried_and_a_never_sent_alert_is_not_resolved() -> None:
    channel = MemoryChannel()
    alerter = Alerter(SETTINGS, [channel])
    await alerter.update([A], T)
    channel.failing = True
    assert await alerter.update([], T + 1) == []
    assert alerter.open_alerts == []
    await alerter.update([B], T + 2)  # B never reaches the channel
    channel.failing = False
    sent = await alerter.update([], T + 3)
    assert [(n.kind, n.alert.key) for n in sent] == [(RESOLVED, A.key)]
    assert [key for _, key, _ in channel.sent] == [A.key, A.key]


async def test_channels_come_from_settings_and_the_log_is_always_one() -> None:
    assert [type(c) for c in Alerter(AlertSettings()).channels] == [LogChannel]
    settings = AlertSettings(
        webhook_url="https://hooks.example/x?token=tok123", smtp_host="mail", mail_to=("a@b",)
    )
    channels = Alerter(settings).channels
    assert [type(c) for c in channels] == [LogChannel, WebhookChannel, EmailChannel]
    assert "tok123" not in repr(channels[1])


async def test_the_log_channel_warns_when_firing_and_informs_when_resolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hindsight.alerts")
    alerter = Alerter(SETTINGS, [LogChannel()])
    await alerter.update([A], T)
    await alerter.update([], T + 1)
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert records == [
        ("WARNING", f"ALERT FIRING: capture is behind (warning, {A.key})"),
        ("INFO", f"ALERT RESOLVED: capture is behind (warning, {A.key})"),
    ]


# --- a real SMTP server --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler that keeps every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"right", handled=False)

    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(bytes(e.original_content or b""), policy=policy.default)
            for e in self.envelopes
        ]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


def _mail_settings(port: int, **changes: Any) -> AlertSettings:
    base = AlertSettings(
        smtp_host="127.0.0.1", smtp_port=port, mail_from="hs@test", mail_to=("a@test", "b@test")
    )
    return dataclasses.replace(base, **changes)


async def test_email_is_sent_for_firing_and_resolution(
    smtp_server: tuple[Controller, Mailbox],
) -> None:
    controller, mailbox = smtp_server
    alerter = Alerter(_mail_settings(controller.port))
    await alerter.update([A], T)
    await alerter.update([], T + 60)
    assert [(e.mail_from, e.rcpt_tos) for e in mailbox.envelopes] == [
        ("hs@test", ["a@test", "b@test"])
    ] * 2
    fired, resolved = mailbox.messages()
    assert fired["Subject"] == "[Hindsight] FIRING: capture is behind"
    assert resolved["Subject"] == "[Hindsight] RESOLVED: capture is behind"
    body = fired.get_content()
    assert "capture is behind" in body and A.key in body and "lag_s: 90" in body, body
    assert fired["To"] == "a@test, b@test"


async def test_email_logs_in_and_a_rejected_login_is_logged_and_retried(
    smtp_server: tuple[Controller, Mailbox], caplog: pytest.LogCaptureFixture
) -> None:
    controller, mailbox = smtp_server
    wrong = Alerter(_mail_settings(controller.port, smtp_username="hs", smtp_password="wrong"))
    await wrong.update([A], T)
    tried = len(mailbox.logins)
    await wrong.update([A], T + 1)
    assert mailbox.envelopes == [] and tried and len(mailbox.logins) > tried, "retried"
    assert "email could not send firing" in caplog.text and "wrong" not in caplog.text
    right = Alerter(_mail_settings(controller.port, smtp_username="hs", smtp_password="right"))
    await right.update([A], T)
    assert mailbox.logins[-1] == (b"hs", b"right") and len(mailbox.envelopes) == 1


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_starttls_is_used_and_never_skipped(tmp_path: Path) -> None:
    cert, key = _self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=_free_port(),
        tls_context=server_tls,
        require_starttls=True,
    )
    controller.start()
    try:
        client_tls = ssl.create_default_context(cadata=cert.decode())
        channel = EmailChannel(
            "127.0.0.1",
            controller.port,
            mail_from="hs@test",
            mail_to=["a@test"],
            starttls=True,
            tls_context=client_tls,
        )
        await channel.send(Notification(A, FIRING, T))
        assert len(mailbox.envelopes) == 1, "require_starttls: only a TLS session may send"
    finally:
        controller.stop()


async def test_starttls_against_a_server_without_it_fails_rather_than_send_in_clear(
    smtp_server: tuple[Controller, Mailbox], caplog: pytest.LogCaptureFixture
) -> None:
    controller, mailbox = smtp_server
    alerter = Alerter(_mail_settings(controller.port, smtp_starttls=True))
    await alerter.update([A], T)
    assert mailbox.envelopes == []
    assert f"SMTP 127.0.0.1:{controller.port}" in caplog.text, caplog.text


# --- a real HTTP receiver ------------------------------------------------------------------

TOKEN = "querysecret42"
PATH_TOKEN = "pathsecret0123456789abcdef"


@dataclass
class Receiver:
    """What the webhook receiver got, and how it answers."""

    port: int = 0
    answer: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://hook:hookpass@127.0.0.1:{self.port}/hooks/{PATH_TOKEN}?token={TOKEN}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def hook(request: web.Request) -> web.Response:
        if state.hang:
            await state.release.wait()
        state.received.append(await request.json())
        state.queries.append(dict(request.query))
        return web.Response(status=state.answer)

    app = web.Application()
    app.router.add_post(f"/hooks/{PATH_TOKEN}", hook)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


def _assert_masked(text: str) -> None:
    for secret in (TOKEN, PATH_TOKEN, "hookpass"):
        assert secret not in text, f"{secret} leaked: {text}"


async def test_webhook_posts_the_json_payload(receiver: Receiver) -> None:
    alerter = Alerter(AlertSettings(webhook_url=receiver.url))
    await alerter.update([A], T)
    await alerter.update([], T + 5)
    fired, resolved = receiver.received
    assert fired == {
        "status": "firing",
        "key": A.key,
        "severity": WARNING,
        "summary": "capture is behind",
        "details": {"lag_s": 90},
        "at": "2025-01-15T12:00:00+00:00",
    }
    assert resolved["status"] == "resolved" and resolved["at"] == "2025-01-15T12:00:05+00:00"
    assert receiver.queries[0] == {"token": TOKEN}


async def test_webhook_posts_a_slack_message(receiver: Receiver) -> None:
    alerter = Alerter(AlertSettings(webhook_url=receiver.url, webhook_format="slack"))
    await alerter.update([B], T)
    await alerter.update([], T + 5)
    fired, resolved = receiver.received
    assert fired["text"] == "[FIRING] over quota"
    assert resolved["text"] == "[RESOLVED] over quota"
    assert fired["attachments"][0]["color"] == "danger"
    assert {"title": "key", "value": "quota", "short": True} in fired["attachments"][0]["fields"]


async def test_a_webhook_answering_500_is_logged_masked_and_retried(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer = 500
    alerter = Alerter(AlertSettings(webhook_url=receiver.url))
    await alerter.update([A], T)
    assert "HTTP 500" in caplog.text and f"127.0.0.1:{receiver.port}/hooks/***" in caplog.text
    _assert_masked(caplog.text)
    receiver.answer = 200
    await alerter.update([A], T + 1)  # well within the cool-down
    assert [r["status"] for r in receiver.received] == ["firing", "firing"]
    await alerter.update([A], T + 2)
    assert len(receiver.received) == 2, "delivered: no more until the cool-down"


async def test_a_refused_webhook_is_logged_masked_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"https://hook:hookpass@127.0.0.1:{_free_port()}/hooks/{PATH_TOKEN}?token={TOKEN}"
    alerter = Alerter(AlertSettings(webhook_url=url))
    await alerter.update([A], T)
    await alerter.update([A], T + 1)
    failures = [
        r.getMessage() for r in caplog.records if "webhook could not send" in r.getMessage()
    ]
    assert len(failures) == 2, caplog.text
    assert "Cannot connect" in failures[0] and "***@127.0.0.1" in failures[0], failures[0]
    _assert_masked(caplog.text)


async def test_a_webhook_that_does_not_answer_times_out(receiver: Receiver) -> None:
    receiver.hang = True
    channel = WebhookChannel(receiver.url, timeout_s=0.2)
    with pytest.raises(DeliveryFailed, match=r"no answer within 0.2 s") as caught:
        await channel.send(Notification(A, FIRING, T))
    _assert_masked(str(caught.value))
