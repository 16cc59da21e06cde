"""Alerts: conditions worth telling someone about, read from the status, sent once per episode.

``conditions(status, settings, now)`` is a pure function of the dict ``hindsight status
--json`` prints (``hindsight.status_report``, plus what the daemon adds, below).
``Alerter.update`` compares them with the alerts already open and notifies every channel (the
log always; a webhook and email when configured): a new alert at once, a reminder when it is
still open after ``cooldown_s`` or its severity changed, and a resolution when it is gone.
Delivery is tracked per channel, so a channel that failed (refused, HTTP 500, timeout; logged
with any URL masked) gets the notification again at the next update while the others wait for
the cool-down; a channel that never heard of an alert gets no resolution for it. ``update``
never raises for a channel.

Status keys each condition reads; a key that is absent turns its condition off. Keys marked
*not yet* are not in ``hindsight status --json`` yet (the daemon / API should add them):

- capture stopped: ``daemon.running`` false (*not yet*), or a ``capture[]`` entry (*not yet*:
  ``{"source": "mongodb"|"filesystem", "name", "state", "since" (epoch s), "last_error",
  "lag_s", "alerts"}``, i.e. ``MongoStatus`` plus source, name and lag) whose ``state`` is
  ``stopped`` or ``error``, or ``down`` for longer than ``capture_lag_s`` (it retries by
  itself, and an election is brief).
- capture lagging: ``capture[].lag_s`` above ``capture_lag_s`` (*not yet*).
- history lost (MongoDB resync): a ``capture[].alerts`` text containing "history lost" (the
  daemon's ``MongoStatus.alerts``; it stays open until the daemon restarts). Other texts
  there are a ``capture_alert`` warning.
- backup failed / other job failed: ``jobs[].last.result == "failed"`` for the ``full`` and
  ``incremental`` jobs (other jobs: ``job_failed``).
- verification failed: ``backups.newest.<type>.verification`` with ``verified`` false and a
  ``verified_at`` (a verification ran and failed); else ``jobs[]`` ``verify`` failed.
- schedule missed: ``jobs[].overdue_since`` or ``jobs[].next_due`` more than
  ``SCHEDULE_GRACE_S`` in the past, or ``jobs[].last.result == "skipped"``; a ``jobs[]``
  entry with ``error`` (unreadable history) is a warning of its own.
- quota near / over: ``backups.storage.quota_used`` (fraction) against
  ``quota_warn_percent``, and ``backups.storage.over_quota``; one ``quota`` key whose
  severity rises from warning to critical.
- scan findings: ``scan_findings``, the number of findings of the last scan (*not yet*).
- restore failed: ``last_recovery``, the newest recovery operation's record (*not yet*:
  ``OperationCatalog.get(newest id).record``), when its ``status`` is ``failed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp

from journal.errors import ConfigError, HindsightError

__all__ = [
    "CRITICAL",
    "FIRING",
    "RESOLVED",
    "SCHEDULE_GRACE_S",
    "WARNING",
    "Alert",
    "AlertSettings",
    "Alerter",
    "Channel",
    "DeliveryFailed",
    "EmailChannel",
    "LogChannel",
    "Notification",
    "WebhookChannel",
    "channels_from",
    "conditions",
    "mask_url",
    "mask_urls",
]

log = logging.getLogger("hindsight.alerts")

WARNING, CRITICAL = "warning", "critical"
FIRING, RESOLVED = "firing", "resolved"
SCHEDULE_GRACE_S: Final = 300
"""How late a scheduled job may be before it counts as missed (a busy slot, a slow start)."""
DEFAULT_WEBHOOK_TIMEOUT_S: Final = 10.0
DEFAULT_SMTP_TIMEOUT_S: Final = 10.0
WEBHOOK_FORMATS: Final = ("json", "slack")
BACKUP_JOBS: Final = ("full", "incremental")
_MASK: Final = "***"
_TOKEN_SEGMENT_CHARS: Final = 16  # a path segment this long is treated as a secret (Slack)
_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;)\]]")


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and when a condition counts; "" turns a channel off."""

    webhook_url: str = field(default="", repr=False)  # may embed a token
    webhook_format: str = "json"  # "json" | "slack"
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    mail_from: str = "hindsight@localhost"
    mail_to: tuple[str, ...] = ()
    cooldown_s: int = 3600  # the same open alert is not re-sent within this
    capture_lag_s: int = 60  # capture lag beyond this is an alert
    quota_warn_percent: int = 90

    def __post_init__(self) -> None:
        if problems := _problems(self):
            raise ConfigError(f"alert settings: {problems[0]}")


def _problems(s: AlertSettings) -> list[str]:
    """What is wrong with ``s``, each naming the fix."""
    problems = []
    if s.webhook_format not in WEBHOOK_FORMATS:
        problems.append(f"webhook_format must be json or slack, not {s.webhook_format!r}")
    if s.webhook_url and not s.webhook_url.startswith(("http://", "https://")):
        problems.append(f"webhook_url must be http(s)://..., not {mask_url(s.webhook_url)}")
    if s.smtp_host and not s.mail_to:
        problems.append("smtp_host is set but mail_to is empty: name who gets alert mail")
    if min(s.cooldown_s, s.capture_lag_s) < 0:
        problems.append("cooldown_s and capture_lag_s must not be negative")
    if not 1 <= s.quota_warn_percent <= 100:
        problems.append(f"quota_warn_percent must be 1 to 100, not {s.quota_warn_percent}")
    return problems


@dataclass(frozen=True)
class Alert:
    """One condition that needs a person: ``key`` identifies it across updates."""

    key: str  # stable identity, e.g. "capture_stopped:mongodb:main"
    severity: str  # "warning" | "critical"
    summary: str  # one line a person understands, with what to do
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    """What a channel sends: an alert firing (new or a reminder) or resolved, at ``at``."""

    alert: Alert
    kind: str  # "firing" | "resolved"
    at: float  # epoch seconds


class Channel(Protocol):
    """Somewhere notifications go.

    ``send`` delivers one notification or raises (any ``Exception``) with a reason that is
    safe to log; the ``Alerter`` logs it and tries again at its next update.
    """

    name: str

    async def send(self, notification: Notification) -> None: ...


class DeliveryFailed(HindsightError):
    """A channel could not deliver a notification; the message has every secret masked."""


# --- masking -------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """``url`` safe to log: user info, query values, fragment and path parts of 16+ characters
    masked.

    Webhooks carry their secret in the query (``?token=``) or the path (Slack's
    ``/services/T/B/<secret>``), not only as a password, hence more than ``mask_uri``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _MASK
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{_MASK}@{host}" if "@" in parts.netloc else host
    path = "/".join(
        _MASK if len(segment) >= _TOKEN_SEGMENT_CHARS else segment
        for segment in parts.path.split("/")
    )
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{name}={_MASK}" for name, _ in pairs) or (_MASK if parts.query else "")
    return urlunsplit((parts.scheme, netloc, path, query, _MASK if parts.fragment else ""))


def mask_urls(text: str) -> str:
    """``text`` with every URL in it masked by ``mask_url`` (error messages quote URLs)."""
    return _URL.sub(lambda match: mask_url(match.group(0)), text)


# --- conditions ----------------------------------------------------------------------------

Check = Callable[[Mapping[str, Any], AlertSettings, float], list[Alert]]


def conditions(status: Mapping[str, Any], settings: AlertSettings, now: float) -> list[Alert]:
    """Every alert the status calls for at ``now`` (epoch seconds), sorted by key.

    Pure: reads only its arguments. The module docstring lists the keys it reads.
    """
    checks: tuple[Check, ...] = (_daemon, _capture, _jobs, _verification, _quota, _scan, _restore)
    alerts = {a.key: a for check in checks for a in check(status, settings, now)}
    return sorted(alerts.values(), key=lambda a: a.key)


def _daemon(status: Mapping[str, Any], settings: AlertSettings, now: float) -> list[Alert]:
    daemon = status.get("daemon")
    if not isinstance(daemon, Mapping) or daemon.get("running", True):
        return []
    summary = (
        "The Hindsight daemon is not running, so nothing is captured or backed up: start it "
        "(`hindsight run`) and check its log"
    )
    return [Alert("capture_stopped:daemon", CRITICAL, summary, {"sources": status.get("sources")})]


def _capture(status: Mapping[str, Any], settings: AlertSettings, now: float) -> list[Alert]:
    alerts = []
    for source in _mappings(status.get("capture")):
        name = f"{source.get('source', 'source')}:{source.get('name', '?')}"
        alerts += _capture_stopped(source, name, settings, now)
        alerts += _capture_lag(source, name, settings)
        alerts += _capture_notes(source, name)
    return alerts


def _capture_stopped(
    source: Mapping[str, Any], name: str, settings: AlertSettings, now: float
) -> list[Alert]:
    state = str(source.get("state", ""))
    since = _epoch(source.get("since"))
    down_for = now - since if since is not None else None
    if state not in ("stopped", "error", "down"):
        return []
    if state == "down" and down_for is not None and down_for < settings.capture_lag_s:
        return []
    error = mask_urls(str(source.get("last_error") or ""))
    summary = (
        f"Capture of {name} is {state}{f' ({error})' if error else ''}; its changes are not "
        "being recorded: make the source reachable and check the daemon's log"
    )
    details = {"state": state, "since": source.get("since"), "last_error": error}
    return [Alert(f"capture_stopped:{name}", CRITICAL, summary, details)]


def _capture_lag(source: Mapping[str, Any], name: str, settings: AlertSettings) -> list[Alert]:
    lag = _number(source.get("lag_s"))
    if lag is None or lag <= settings.capture_lag_s:
        return []
    summary = (
        f"Capture of {name} is {lag:.0f} s behind (limit {settings.capture_lag_s} s), so "
        "restores miss the latest changes: check the daemon's load and the source's link"
    )
    details = {"lag_s": lag, "threshold_s": settings.capture_lag_s}
    return [Alert(f"capture_lag:{name}", WARNING, summary, details)]


def _capture_notes(source: Mapping[str, Any], name: str) -> list[Alert]:
    notes = [mask_urls(str(n)) for n in source.get("alerts") or ()]
    lost = [n for n in notes if "history lost" in n.lower()]
    other = [n for n in notes if n not in lost]
    alerts = []
    if lost:
        summary = (
            f"{name} lost change history (the oplog moved past the resume point) and was "
            "re-synced: changes in that window cannot be restored; enlarge the oplog or "
            "shorten downtime, and take a full backup"
        )
        alerts.append(Alert(f"history_lost:{name}", CRITICAL, summary, {"alerts": lost}))
    if other:
        summary = f"Capture of {name} reported: {other[-1]}; see the daemon's log"
        alerts.append(Alert(f"capture_alert:{name}", WARNING, summary, {"alerts": other}))
    return alerts


def _jobs(status: Mapping[str, Any], settings: AlertSettings, now: float) -> list[Alert]:
    alerts = []
    for job in _mappings(status.get("jobs")):
        if job.get("error"):
            summary = (
                f"The scheduled jobs' history is unreadable ({mask_urls(str(job['error']))}); "
                "missed runs cannot be detected until the daemon restarts and starts it afresh"
            )
            alerts.append(Alert("schedule_history", WARNING, summary, {"error": job["error"]}))
            continue
        alerts += _job_failed(job) + _schedule_missed(job, now)
    return alerts


def _job_failed(job: Mapping[str, Any]) -> list[Alert]:
    name, last = str(job.get("job")), job.get("last") or {}
    if last.get("result") != "failed" or name == "verify":  # verify: see _verification
        return []
    error = mask_urls(str(last.get("message") or "no message"))
    details = {"job": name, "scheduled": last.get("scheduled"), "error": error}
    if name in BACKUP_JOBS:
        summary = (
            f"The scheduled {name} backup failed: {error}; fix the cause, then run "
            f"`hindsight backup create --{name}`"
        )
        return [Alert(f"backup_failed:{name}", CRITICAL, summary, details)]
    summary = f"The scheduled {name} job failed: {error}; see the daemon's log"
    return [Alert(f"job_failed:{name}", WARNING, summary, details)]


def _schedule_missed(job: Mapping[str, Any], now: float) -> list[Alert]:
    name, last = str(job.get("job")), job.get("last") or {}
    late = [_epoch(job.get("overdue_since")), _epoch(job.get("next_due"))]
    due = min((t for t in late if t is not None and now - t > SCHEDULE_GRACE_S), default=None)
    details = {"job": name, "cron": job.get("cron")}
    if due is not None:
        when = _iso(due)
        summary = (
            f"Scheduled job {name} missed its run due {when}: make sure the daemon "
            "(`hindsight run`) is running; it catches up at start"
        )
        return [Alert(f"schedule_missed:{name}", WARNING, summary, details | {"due": when})]
    if last.get("result") == "skipped":
        reason = mask_urls(str(last.get("message") or "the previous run was still going"))
        summary = (
            f"Scheduled job {name} skipped its run due {last.get('scheduled')}: {reason}; "
            "give it a less frequent schedule"
        )
        return [Alert(f"schedule_missed:{name}", WARNING, summary, details | {"reason": reason})]
    return []


def _verification(status: Mapping[str, Any], settings: AlertSettings, now: float) -> list[Alert]:
    newest = (status.get("backups") or {}).get("newest") or {}
    alerts = []
    for type_, metadata in newest.items():
        check = (metadata or {}).get("verification") or {}
        if check.get("verified") is False and check.get("verified_at"):
            backup_id = metadata.get("backup_id")
            summary = (
                f"Verification of the newest {type_} backup {backup_id} failed, so it may not "
                f"restore: see `hindsight backup verify {backup_id}` and take a new {type_} backup"
            )
            details = {"backup_id": backup_id, "verified_at": check["verified_at"]}
            alerts.append(Alert(f"verification_failed:{type_}", CRITICAL, summary, details))
    return alerts or _verify_job_failed(status)


def _verify_job_failed(status: Mapping[str, Any]) -> list[Alert]:
    for job in _mappings(status.get("jobs")):
        last = job.get("last") or {}
        if job.get("job") == "verify" and last.get("result") == "failed":
            error = mask_urls(str(last.get("message") or "no message"))
            summary = (
                f"The scheduled backup verification failed: {error}; run "
                "`hindsight backup verify` on the newest backups and see the daemon's log"
            )
            details = {"scheduled": last.get("scheduled"), "error": error}
            return [Alert("verification_failed:verify", CRITICAL, summary, details)]
    return []


def _quota(status: Mapping[str, Any], settings: AlertSettings, now: float) -> list[Alert]:
    storage = (status.get("backups") or {}).get("storage") or {}
    used = _number(storage.get("quota_used"))
    over = bool(storage.get("over_quota"))
    if not over and (used is None or used * 100 < settings.quota_warn_percent):
        return []
    percent = f"{used * 100:.0f}%" if used is not None else "over 100%"
    summary = (
        f"The repository uses {percent} of its quota"
        + (", over it: backups are being pruned" if over else "")
        + "; raise the quota (storage.local.max_size) or keep fewer backups (backup.retention)"
    )
    details = {
        "total_bytes": storage.get("total_bytes"),
        "quota_bytes": storage.get("quota_bytes"),
        "quota_used": used,
    }
    return [Alert("quota", CRITICAL if over else WARNING, summary, details)]


def _scan(status: Mapping[str, Any], settings: AlertSettings, now: float) -> list[Alert]:
    count = _number(status.get("scan_findings"))
    if not count:
        return []
    summary = (
        f"The last scan found {count:.0f} lost or corrupted item(s): run "
        "`hindsight recover scan` to see them and restore what is missing"
    )
    return [Alert("scan_findings", WARNING, summary, {"findings": int(count)})]


def _restore(status: Mapping[str, Any], settings: AlertSettings, now: float) -> list[Alert]:
    record = status.get("last_recovery")
    if not isinstance(record, Mapping) or record.get("status") != "failed":
        return []
    op_id = record.get("operation_id")
    errors = [mask_urls(str(e)) for e in record.get("errors") or ()]
    summary = (
        f"Restore {op_id} failed{f': {errors[0]}' if errors else ''}; see "
        f"`hindsight recover status {op_id}`, then retry or `hindsight recover rollback {op_id}`"
    )
    details = {"operation_id": op_id, "errors": errors[:5], "results": record.get("results")}
    return [Alert("restore_failed", CRITICAL, summary, details)]


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    """The mappings in a status list (anything else: none)."""
    if not isinstance(value, list | tuple):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _epoch(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string (naive means UTC); else None."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return _number(value)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


# --- the alerter ---------------------------------------------------------------------------


@dataclass
class _Episode:
    """One alert from when it first fires until every channel told of it heard it resolved."""

    alert: Alert
    told: dict[int, tuple[str, float]] = field(default_factory=dict)  # channel: severity, at
    resolved: bool = False


class Alerter:
    """Turns each update's alerts into notifications: new, reminders, resolutions.

    ``channels`` None: those ``settings`` configure (``channels_from``). Dedup, cool-down and
    retries are per channel (see the module docstring).
    """

    def __init__(self, settings: AlertSettings, channels: Sequence[Channel] | None = None) -> None:
        self.settings = settings
        self.channels = list(channels_from(settings) if channels is None else channels)
        self._episodes: dict[str, _Episode] = {}
        self._lock = asyncio.Lock()  # the daemon and the API may update at once

    @property
    def open_alerts(self) -> list[Alert]:
        """Alerts firing now, by key."""
        return sorted((e.alert for e in self._episodes.values() if not e.resolved), key=_by_key)

    async def update(self, alerts: Sequence[Alert], now: float) -> list[Notification]:
        """Notify what changed, given every alert that holds at ``now``; what was delivered
        (to at least one channel). Never raises for a channel's failure."""
        async with self._lock:
            self._merge(alerts)
            due = [(e, self._owed(e, now)) for e in self._episodes.values()]
            due = [(e, owed) for e, owed in due if owed]
            sent = await asyncio.gather(*(self._notify(e, owed, now) for e, owed in due))
            self._episodes = {k: e for k, e in self._episodes.items() if not e.resolved or e.told}
            return [n for n in sent if n is not None]

    def _merge(self, alerts: Iterable[Alert]) -> None:
        current = {a.key: a for a in alerts}
        for episode in self._episodes.values():
            episode.resolved = episode.alert.key not in current
        for key, alert in current.items():
            self._episodes.setdefault(key, _Episode(alert)).alert = alert

    def _owed(self, episode: _Episode, now: float) -> list[int]:
        """The channels that should hear about ``episode`` now."""
        if episode.resolved:
            return sorted(episode.told)  # only those that heard it fire
        return [
            i
            for i in range(len(self.channels))
            if (told := episode.told.get(i)) is None
            or told[0] != episode.alert.severity
            or now - told[1] >= self.settings.cooldown_s
        ]

    async def _notify(self, episode: _Episode, owed: list[int], now: float) -> Notification | None:
        notification = Notification(episode.alert, RESOLVED if episode.resolved else FIRING, now)
        results = await asyncio.gather(*(self._send(i, notification) for i in owed))
        for i, ok in zip(owed, results, strict=True):
            if ok and episode.resolved:
                episode.told.pop(i, None)
            elif ok:
                episode.told[i] = (episode.alert.severity, now)
        return notification if any(results) else None

    async def _send(self, index: int, notification: Notification) -> bool:
        channel = self.channels[index]
        try:
            await channel.send(notification)
        except Exception as exc:
            reason = mask_urls(str(exc) or type(exc).__name__)
            log.warning(
                "alert channel %s could not send %s %s (retried at the next update): %s",
                channel.name,
                notification.kind,
                notification.alert.key,
                reason,
            )
            return False
        return True


def _by_key(alert: Alert) -> str:
    return alert.key


def channels_from(settings: AlertSettings) -> list[Channel]:
    """The log, and the webhook and email when ``settings`` configure them."""
    channels: list[Channel] = [LogChannel()]
    if settings.webhook_url:
        channels.append(WebhookChannel(settings.webhook_url, settings.webhook_format))
    if settings.smtp_host:
        channels.append(
            EmailChannel(
                settings.smtp_host,
                settings.smtp_port,
                mail_from=settings.mail_from,
                mail_to=settings.mail_to,
                starttls=settings.smtp_starttls,
                username=settings.smtp_username,
                password=settings.smtp_password,
            )
        )
    return channels


# --- channels ------------------------------------------------------------------------------


def _headline(notification: Notification) -> str:
    """``FIRING: summary`` on one line (a mail subject, a log line)."""
    return f"{notification.kind.upper()}: {_one_line(notification.alert.summary)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


class LogChannel:
    """The daemon's log: a warning when an alert fires, info when it is resolved."""

    name: str = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    async def send(self, notification: Notification) -> None:
        """Log one line."""
        alert = notification.alert
        level = logging.WARNING if notification.kind == FIRING else logging.INFO
        self.logger.log(
            level, "ALERT %s (%s, %s)", _headline(notification), alert.severity, alert.key
        )


class WebhookChannel:
    """An HTTP POST of JSON: Hindsight's own fields (``json``) or a Slack message (``slack``)."""

    name: str = "webhook"

    def __init__(
        self, url: str, fmt: str = "json", *, timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S
    ) -> None:
        if fmt not in WEBHOOK_FORMATS:
            raise ConfigError(f"webhook format must be json or slack, not {fmt!r}")
        self.url, self.format, self.timeout_s = url, fmt, timeout_s

    def __repr__(self) -> str:
        return f"WebhookChannel({mask_url(self.url)!r}, {self.format!r})"

    async def send(self, notification: Notification) -> None:
        """POST the payload; any answer but 2xx, a refused connection or a timeout raises."""
        body = json.dumps(_payload(notification, self.format), default=str)
        where = f"POST {mask_url(self.url)}"
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    self.url, data=body, headers={"Content-Type": "application/json"}
                ) as response,
            ):
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(f"{where}: HTTP {response.status} {response.reason}")
        except TimeoutError as exc:
            raise DeliveryFailed(f"{where}: no answer within {self.timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            reason = mask_urls(str(exc) or type(exc).__name__)
            raise DeliveryFailed(f"{where}: {reason}") from exc


def _payload(notification: Notification, fmt: str) -> dict[str, Any]:
    if fmt == "slack":
        return _slack_payload(notification)
    alert = notification.alert
    return {
        "status": notification.kind,
        "key": alert.key,
        "severity": alert.severity,
        "summary": alert.summary,
        "details": alert.details,
        "at": _iso(notification.at),
    }


def _slack_payload(notification: Notification) -> dict[str, Any]:
    """A Slack (and Mattermost, Rocket.Chat) incoming-webhook message: text plus a colour bar."""
    alert = notification.alert
    if notification.kind == RESOLVED:
        color = "good"
    else:
        color = "danger" if alert.severity == CRITICAL else "warning"
    fields = [("severity", alert.severity), ("key", alert.key), *alert.details.items()]
    attachment = {
        "color": color,
        "fields": [{"title": k, "value": str(v), "short": True} for k, v in fields],
        "ts": int(notification.at),
    }
    text = f"[{notification.kind.upper()}] {_one_line(alert.summary)}"
    return {"text": text, "attachments": [attachment]}


class EmailChannel:
    """Mail through an SMTP server (STARTTLS and login when configured), in a worker thread."""

    name: str = "email"

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        mail_from: str,
        mail_to: Sequence[str],
        starttls: bool = False,
        username: str = "",
        password: str = "",
        timeout_s: float = DEFAULT_SMTP_TIMEOUT_S,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.starttls = host, port, starttls
        self.mail_from, self.mail_to = mail_from, tuple(mail_to)
        self.username, self._password = username, password
        self.timeout_s = timeout_s
        self.tls_context = tls_context  # None: the system's trusted CAs

    async def send(self, notification: Notification) -> None:
        """Send one mail; a refused connection, a rejected login or recipient raises."""
        message = _email(notification, self.mail_from, self.mail_to)
        try:
            await asyncio.to_thread(self._send, message)
        except (smtplib.SMTPException, OSError) as exc:
            reason = mask_urls(str(exc) or type(exc).__name__)
            raise DeliveryFailed(f"SMTP {self.host}:{self.port}: {reason}") from exc

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:  # refuses to go on in clear if the server cannot
                smtp.starttls(context=self.tls_context or ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self._password)
            smtp.send_message(message)


def _email(notification: Notification, mail_from: str, mail_to: Sequence[str]) -> EmailMessage:
    alert = notification.alert
    message = EmailMessage()
    message["Subject"] = f"[Hindsight] {_headline(notification)}"
    message["From"] = mail_from
    message["To"] = ", ".join(mail_to)
    message["Date"] = formatdate(notification.at, usegmt=True)
    message["Message-ID"] = make_msgid(domain="hindsight.invalid")
    details = [f"  {k}: {json.dumps(v, default=str)}" for k, v in alert.details.items()]
    message.set_content(
        "\n".join(
            [
                f"{notification.kind.upper()} ({alert.severity}): {alert.summary}",
                "",
                f"Alert:  {alert.key}",
                f"Time:   {_iso(notification.at)}",
                *(["Details:", *details] if details else []),
            ]
        )
        + "\n"
    )
    return message
