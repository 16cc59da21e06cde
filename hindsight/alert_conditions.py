"""Alert conditions: which alerts a status calls for, as a pure function of the dict
``hindsight status --json`` prints (``hindsight.status_report``). ``hindsight.alerts``
sends them.

Status keys each condition reads; a key that is absent turns its condition off:

- capture stopped: ``daemon.running`` false, or a ``capture[]`` entry (the daemon's
  published state, ``hindsight.daemon_state``: source, name, state, since, last_error and,
  for MongoDB, the rest of ``MongoStatus``) whose ``state`` is ``stopped`` or ``error``, or
  ``down`` for longer than ``capture_lag_s`` (it retries by itself; an election is brief).
- capture lagging: ``capture[].lag_s`` above ``capture_lag_s``: for each file root, the
  worst time from a change to its journal entry since the daemon's previous report; for
  each MongoDB deployment, the newest change's (from its server time to its capture).
- history lost (MongoDB resync): a ``capture[].alerts`` text containing "history lost" (it
  stays open until the daemon restarts). Other texts there are a ``capture_alert`` warning.
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
- scan findings: ``scan_findings``, the number of findings of the last scan. Scans do not
  publish it yet, so this condition stays off.
- restore failed: ``last_recovery`` (the newest recovery operation's record) whose
  ``status`` is ``failed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from hindsight.alerts import (
    BACKUP_JOBS,
    CRITICAL,
    SCHEDULE_GRACE_S,
    WARNING,
    Alert,
    AlertSettings,
    iso_utc,
    mask_urls,
)

__all__ = ["conditions"]


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
        when = iso_utc(due)
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
