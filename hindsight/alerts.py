"""Alerts: conditions worth telling someone about, read from the status, sent once per episode.

``hindsight.alert_conditions.conditions(status, settings, now)`` says which alerts a status
calls for (a pure function of what ``hindsight status --json`` prints). ``Alerter.update``
compares them with the alerts already open and notifies every channel (the log always; a
webhook and email when configured): a new alert at once, a reminder when it is still open
after ``cooldown_s`` or its severity changed, and a resolution when it is gone. Delivery is
tracked per channel, so a channel that failed (refused, HTTP 500, timeout; logged with any
URL masked) gets the notification again at the next update while the others wait for the
cool-down; a channel that never heard of an alert gets no resolution for it. ``update``
never raises for a channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import smtplib
import ssl
from collections.abc import Iterable, Sequence
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
    "BACKUP_JOBS",
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
    "iso_utc",
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


def iso_utc(epoch: float) -> str:
    """Epoch seconds as ISO-8601 UTC to the second."""
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
        "at": iso_utc(notification.at),
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
                f"Time:   {iso_utc(notification.at)}",
                *(["Details:", *details] if details else []),
            ]
        )
        + "\n"
    )
    return message
