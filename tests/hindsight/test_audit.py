"""``AuditLog``: a hash chain that shows every edit, removal and reordering; the CLI on top."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from hindsight.audit import GENESIS, AuditLog, AuditProblem, audit_log
from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.timeparse import parse_time
from hindsight.wiring import open_repository
from journal.errors import ConfigError, CorruptionError

PROJECT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))


@pytest.fixture(params=[None, KEY], ids=["sha256", "hmac"])
def key(request: pytest.FixtureRequest) -> bytes | None:
    return request.param  # type: ignore[no-any-return]


def filled(root: Path, key: bytes | None, count: int = 5) -> AuditLog:
    """A log with ``count`` entries: seq i by user{i}."""
    log = AuditLog(root, key)
    for i in range(1, count + 1):
        log.append(actor=f"user{i}", action="backup create", outcome="ok", details={"n": i})
    return log


def lines(log: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.log_path.read_text().splitlines()]


def rewrite(log: AuditLog, docs: list[dict[str, Any]]) -> None:
    log.log_path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def forge(log: AuditLog, docs: list[dict[str, Any]], start: int) -> None:
    """What someone without the key can do: recompute SHA-256 hashes and links from
    ``docs[start]`` on, and point head.json at the new last entry."""
    for i in range(start, len(docs)):
        docs[i]["prev"] = docs[i - 1]["hash"] if i else GENESIS
        body = {k: v for k, v in docs[i].items() if k != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        docs[i]["hash"] = hashlib.sha256(canonical).hexdigest()
    rewrite(log, docs)
    head = {"seq": docs[-1]["seq"], "hash": docs[-1]["hash"]}
    log.head_path.write_text(json.dumps(head))


def reasons(problems: list[AuditProblem]) -> str:
    return "; ".join(f"line {p.line} seq {p.seq}: {p.reason}" for p in problems)


# ---------------------------------------------------------------------- the chain
def test_a_chain_verifies_and_links_every_entry(tmp_path: Path, key: bytes | None) -> None:
    log = filled(tmp_path, key)
    assert log.verify() == []
    entries = list(log.entries())
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert [e.time for e in entries] == sorted(e.time for e in entries)
    assert entries[0].time.endswith("Z") and len(entries[0].time) == len(
        "2026-01-01T00:00:00.000000Z"
    )
    assert {e.alg for e in entries} == {"hmac-sha256" if key else "sha256"}
    assert json.loads(log.head_path.read_text())["seq"] == 5
    assert entries[2].as_dict()["details"] == {"n": 3}


def test_append_returns_the_entry_as_stored(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    made = log.append(actor="ana", action="recover", outcome="denied", target="app")
    assert list(log.entries()) == [made]
    assert (made.seq, made.actor, made.outcome, made.target) == (1, "ana", "denied", "app")


def test_an_unknown_outcome_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="maybe"):
        AuditLog(tmp_path).append(actor="ana", action="backup", outcome="maybe")
    assert not (tmp_path / "audit" / "audit.jsonl").exists()


def test_entries_since_a_time(tmp_path: Path) -> None:
    log = filled(tmp_path, None, 3)
    later = log.append(actor="bo", action="prune", outcome="ok")
    assert [e.seq for e in log.entries(since_us=0)] == [1, 2, 3, 4]
    assert [e.seq for e in log.entries(since_us=parse_time(later.time))][-1] == 4
    assert list(log.entries(since_us=parse_time(later.time) + 1)) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", "mallory"),
        ("action", "key rotate"),
        ("target", "elsewhere"),
        ("outcome", "failed"),
        ("details", {"n": 999}),
        ("time", "2099-01-01T00:00:00.000000Z"),
    ],
    ids=["actor", "action", "target", "outcome", "details", "time"],
)
def test_editing_a_middle_entry_is_found(
    tmp_path: Path, key: bytes | None, field: str, value: Any
) -> None:
    log = filled(tmp_path, key)
    docs = lines(log)
    docs[2][field] = value
    rewrite(log, docs)
    problems = log.verify()
    assert AuditProblem(3, 3, "entry 3 was changed (its hash does not match)") in problems, reasons(
        problems
    )


def test_deleting_a_middle_entry_is_found(tmp_path: Path, key: bytes | None) -> None:
    log = filled(tmp_path, key)
    docs = lines(log)
    rewrite(log, docs[:2] + docs[3:])
    assert log.verify() == [AuditProblem(3, 4, "entry 3 is missing")]
    rewrite(log, docs[:1] + docs[4:])
    assert log.verify() == [AuditProblem(2, 5, "entries 2-4 are missing")]


def test_deleting_the_first_entries_is_found(tmp_path: Path) -> None:
    log = filled(tmp_path, None)
    rewrite(log, lines(log)[2:])
    assert log.verify() == [AuditProblem(1, 3, "entries 1-2 are missing")]


def test_removing_the_last_entries_is_found_through_head_json(
    tmp_path: Path, key: bytes | None
) -> None:
    log = filled(tmp_path, key)
    docs = lines(log)
    rewrite(log, docs[:3])
    expected = AuditProblem(4, 5, "the last 2 entries were removed (head.json names seq 5)")
    assert log.verify() == [expected]
    # a later append continues from head.json: the removal stays visible as a gap
    log.append(actor="bo", action="status", outcome="ok")
    assert log.verify() == [AuditProblem(4, 6, "entries 4-5 are missing")]


def test_emptying_the_log_is_found(tmp_path: Path) -> None:
    log = filled(tmp_path, None)
    log.log_path.write_text("")
    assert log.verify() == [
        AuditProblem(1, 5, "the last 5 entries were removed (head.json names seq 5)")
    ]


def test_removing_head_json_is_found(tmp_path: Path) -> None:
    log = filled(tmp_path, None)
    log.head_path.unlink()
    problems = log.verify()
    assert [(p.seq, "head.json is missing" in p.reason) for p in problems] == [(5, True)]
    log.head_path.write_text("{not json")
    assert [p.line for p in log.verify()] == [0], reasons(log.verify())


def test_reordering_is_found(tmp_path: Path, key: bytes | None) -> None:
    log = filled(tmp_path, key)
    docs = lines(log)
    docs[1], docs[2] = docs[2], docs[1]
    rewrite(log, docs)
    problems = log.verify()
    assert AuditProblem(3, 2, "entry 2 is out of order (after entry 3)") in problems, reasons(
        problems
    )


def test_a_duplicated_entry_is_found(tmp_path: Path) -> None:
    log = filled(tmp_path, None)
    docs = lines(log)
    rewrite(log, [*docs[:3], docs[2], *docs[3:]])
    assert log.verify() == [AuditProblem(4, 3, "entry 3 is out of order (after entry 3)")]


def test_a_consistent_rewrite_shows_in_its_dates(tmp_path: Path) -> None:
    """Even a rewrite with every hash recomputed cannot move an entry back in time."""
    log = filled(tmp_path, None)
    docs = lines(log)
    docs[3]["time"] = "2000-01-01T00:00:00.000000Z"
    forge(log, docs, 3)
    assert log.verify() == [AuditProblem(4, 4, "entry 4 is dated before entry 3")]


def test_a_clock_behind_the_last_entry_does_not_break_the_order(tmp_path: Path) -> None:
    """Another machine with a clock ahead wrote the last entry: the next one is not dated
    before it."""
    log = filled(tmp_path, None, 2)
    docs = lines(log)
    docs[1]["time"] = "2099-01-01T00:00:00.000000Z"
    forge(log, docs, 1)
    assert log.verify() == []
    assert log.append(actor="bo", action="status", outcome="ok").time == docs[1]["time"]
    assert log.verify() == []


# ---------------------------------------------------------------------- the key
@pytest.mark.parametrize("alg", ["hmac-sha256", "sha256"], ids=["alg-kept", "alg-changed"])
def test_keyed_entries_cannot_be_reforged_without_the_key(tmp_path: Path, alg: str) -> None:
    log = filled(tmp_path, KEY)
    docs = lines(log)
    docs[2]["actor"] = "mallory"
    for doc in docs[2:]:
        doc["alg"] = alg
    forge(log, docs, 2)
    problems = log.verify()
    assert problems, "a rewrite with recomputed SHA-256 hashes passed the keyed check"
    assert {p.seq for p in problems if p.line} == {3, 4, 5}, reasons(problems)


def test_a_forged_head_json_is_found_with_the_key(tmp_path: Path) -> None:
    log = filled(tmp_path, KEY)
    docs = lines(log)
    rewrite(log, docs[:3])
    log.head_path.write_text(json.dumps({"seq": 3, "hash": docs[2]["hash"]}))
    assert log.verify() == [AuditProblem(0, 3, "head.json was rewritten (its MAC does not match)")]
    assert AuditLog(tmp_path).verify() == [], "without the key the head's MAC is not checked"


def test_keyed_entries_are_checked_for_order_without_the_key(tmp_path: Path) -> None:
    filled(tmp_path, KEY)
    keyless = AuditLog(tmp_path)
    assert keyless.verify() == []
    docs = lines(keyless)
    rewrite(keyless, docs[:1] + docs[2:])
    assert keyless.verify() == [AuditProblem(2, 3, "entry 2 is missing")]


def test_unkeyed_entries_are_reported_when_verifying_with_the_key(tmp_path: Path) -> None:
    filled(tmp_path, None, 2)
    problems = AuditLog(tmp_path, KEY).verify()
    assert [(p.line, p.seq) for p in problems] == [(1, 1), (2, 2)], reasons(problems)
    assert all("not keyed" in p.reason for p in problems)


# ---------------------------------------------------------------------- crashes and damage
def test_an_unfinished_last_line_is_skipped_and_cut_away_by_the_next_append(
    tmp_path: Path, key: bytes | None
) -> None:
    log = filled(tmp_path, key, 3)
    whole = log.log_path.read_bytes()
    torn = whole.splitlines(keepends=True)[-1][:40].replace(b'"seq":3', b'"seq":4')
    with open(log.log_path, "ab") as f:
        f.write(torn)
    assert log.verify() == []
    assert [e.seq for e in log.entries()] == [1, 2, 3]
    made = log.append(actor="bo", action="status", outcome="ok")
    assert made.seq == 4
    assert log.log_path.read_bytes().startswith(whole)
    assert len(log.log_path.read_bytes().splitlines()) == 4
    assert log.verify() == []


def test_a_crash_before_head_json_was_written_is_not_tampering(tmp_path: Path) -> None:
    log = filled(tmp_path, KEY, 3)
    old_head = log.head_path.read_bytes()
    log.append(actor="bo", action="status", outcome="ok")
    log.head_path.write_bytes(old_head)
    assert log.verify() == []
    assert log.append(actor="bo", action="status", outcome="ok").seq == 5
    assert log.verify() == []


def test_a_damaged_line_elsewhere_is_reported_and_stops_entries(tmp_path: Path) -> None:
    log = filled(tmp_path, None)
    raw = log.log_path.read_bytes().splitlines(keepends=True)
    raw[1] = raw[1][:30] + b"\n"
    log.log_path.write_bytes(b"".join(raw))
    problems = log.verify()
    assert [(p.line, p.seq) for p in problems] == [(2, None)], reasons(problems)
    assert "line 2 is not a valid entry" in problems[0].reason
    with pytest.raises(CorruptionError, match="line 2") as caught:
        list(log.entries())
    assert caught.value.path == "audit/audit.jsonl" and caught.value.offset == len(raw[0])


def test_a_garbage_file_does_not_crash_verify(tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "audit.jsonl").write_bytes(b"\xff\xfe\n[1, 2]\n{}\n\x00\x00")
    problems = AuditLog(tmp_path).verify()
    assert [p.line for p in problems] == [1, 2, 3], reasons(problems)


def test_a_missing_log_is_an_empty_intact_one(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    assert log.verify() == [] and list(log.entries()) == []
    assert not (tmp_path / "audit").exists(), "reading must not create files"


# ---------------------------------------------------------------------- concurrency
APPENDER = """
import sys
from pathlib import Path
from hindsight.audit import AuditLog
log = AuditLog(Path(sys.argv[1]), bytes(range(32)))
for i in range(int(sys.argv[3])):
    log.append(actor=sys.argv[2], action="scan", outcome="ok", details={"i": i})
"""


def test_processes_and_threads_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    per_writer = 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(tmp_path), name, str(per_writer)], cwd=PROJECT
        )
        for name in ("cli", "daemon")
    ]
    log = AuditLog(tmp_path, KEY)

    def threaded(name: str) -> None:
        for i in range(per_writer):
            log.append(actor=name, action="scan", outcome="ok", details={"i": i})

    threads = [threading.Thread(target=threaded, args=(f"t{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert log.verify() == []
    entries = list(log.entries())
    assert [e.seq for e in entries] == list(range(1, 4 * per_writer + 1))
    for actor in ("cli", "daemon", "t0", "t1"):
        mine = [e.details["i"] for e in entries if e.actor == actor]
        assert mine == list(range(per_writer)), actor


# ---------------------------------------------------------------------- secrets
def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    made = log.append(
        actor="ana",
        action="config set",
        outcome="ok",
        target="mongodb://admin:pw-target@db:27017/bot",
        details={
            "password": "pw-password",
            "api_token": "pw-token",
            "Client-Secret": "pw-secret",
            "key": "pw-key",
            "nested": [{"passphrase": "pw-passphrase"}],
            "uri": "bob:pw-uri@db:27017",
            "note": "copied from https://carol:pw-note@example.com/x",
            "key_file": "/etc/hindsight.key",
            "token_id": "1a2b3c4d",
            "count": 3,
        },
    )
    text = log.log_path.read_text()
    assert "pw-" not in text, text
    assert made.details["password"] == "***" and made.details["nested"] == [{"passphrase": "***"}]
    assert made.details["uri"] == "bob:***@db:27017"
    assert made.target == "mongodb://admin:***@db:27017/bot"
    assert (
        made.details["key_file"] == "/etc/hindsight.key" and made.details["token_id"] == "1a2b3c4d"
    )
    assert made.details["count"] == 3
    assert log.verify() == []


# ---------------------------------------------------------------------- the CLI
@pytest.fixture
def app(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A protected app whose repository's audit log has three entries of ours."""
    tree = workdir / "app"
    tree.mkdir()
    (tree / "config.py").write_text("DEBUG = False\n")
    assert main(["init", "--protect", str(tree)]) == 0
    with open_repository(load_config(workdir / "hindsight.toml")) as repo:
        log = audit_log(repo)
        for action in ("backup create", "recover files", "key rotate"):
            log.append(actor="tester", action=action, outcome="ok", target="app")
    capsys.readouterr()
    return tree


def ours(workdir: Path) -> AuditLog:
    with open_repository(load_config(workdir / "hindsight.toml")) as repo:
        return audit_log(repo)


def test_audit_verify_cli(app: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = ours(workdir)
    assert {e.alg for e in log.entries()} == {"hmac-sha256"}, "init made a key: the log is keyed"
    count = sum(1 for _ in log.entries())
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    intact = re.search(r"audit trail intact: (\d+) entries", out)
    assert intact and int(intact.group(1)) >= count >= 3, out
    assert main(["audit", "verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == [] and report["entries"] >= 3, report

    docs = lines(log)
    index = next(i for i, d in enumerate(docs) if d["action"] == "recover files")
    docs[index]["outcome"] = "failed"
    rewrite(log, docs)
    assert main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    seq = docs[index]["seq"]
    assert f"line {index + 1}: entry {seq} was changed" in out, out
    assert "audit trail damaged: 1 problem" in out, out
    assert main(["audit", "verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["problems"][0]["seq"] == seq, report


def test_audit_verify_cli_without_the_key_notes_what_it_could_not_check(
    app: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.rename(workdir / "hindsight.key", workdir / "elsewhere.key")
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "keyed entries were checked for order only" in out and "intact" in out, out
    assert main(["audit", "verify", "--key-file", str(workdir / "elsewhere.key")]) == 0
    assert "order only" not in capsys.readouterr().out


def test_report_audit(app: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "audit", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = [r for r in rows if r["actor"] == "tester"]
    assert [r["action"] for r in mine] == ["backup create", "recover files", "key rotate"], rows
    assert set(mine[0]) == {"seq", "time", "actor", "action", "target", "outcome"}
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert main(["report", "audit", "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["action"] for r in table if r["actor"] == "tester"][-1] == "key rotate", table
    assert main(["report", "audit", "--json", "--since", "2999-01-01"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["report", "audit"]) == 0
    out = capsys.readouterr().out
    assert "recover files" in out and "tester" in out and "row" in out, out
