"""The command line end to end, in-process through ``main`` (and once as a real process)."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from hindsight.cli.main import main
from journal.errors import HindsightError
from journal.keys import create_key_file, read_key_file
from journal.repository import Repository
from tests.journal.eventgen import conversation


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def fill(workdir: Path, events: int = 300) -> None:
    """Append events to the repository ``hindsight init`` made in ``workdir``."""
    key = workdir / "hindsight.key"
    secret = read_key_file(key) if key.exists() else None
    with Repository.open(workdir / "backups", secret, writable=True, segment_max_bytes=10_000) as r:
        for i in range(0, events, 50):
            r.log.append([conversation(j) for j in range(i, i + 50)])


def test_init_without_encrypt_says_what_is_and_is_not_encrypted(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "journal and ordinary file contents are NOT encrypted" in out, out
    assert "--encrypt" in out, "it names the way to encrypt everything"
    assert re.search(
        r"Secret files \(\.env, .*\*\.pem, .*\*credentials\*.*\) are always encrypted", out
    )
    assert "hindsight.key (mode 0600)" in out and "copy the key file somewhere safe" in out
    assert "Losing the key file loses the backups of the secret files" in out, out
    assert (workdir / "hindsight.toml").is_file() and (
        workdir / "backups/repository.json"
    ).is_file()
    key = workdir / "hindsight.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, "the key file must be private"
    with Repository.open(workdir / "backups", read_key_file(key)) as repo:
        assert repo.mode == "secrets" and not repo.encrypted


def test_init_json_reports_the_mode(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, report = run_json(capsys, "init")
    assert code == 0 and isinstance(report, dict)
    assert (report["mode"], report["encrypted"]) == ("secrets", False), report
    assert report["key_file"] == str(workdir / "hindsight.key")
    assert ".env" in report["secret_globs"] and "*.pem" in report["secret_globs"]
    (workdir / "other").mkdir()
    monkeypatch.chdir(workdir / "other")
    code, report = run_json(capsys, "init", "--encrypt")
    assert code == 0 and isinstance(report, dict)
    assert (report["mode"], report["encrypted"]) == ("aes-256-gcm", True), report


def test_init_with_passphrase_uses_no_key_file(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HINDSIGHT_PASSPHRASE", "correct horse battery staple")
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "with the passphrase from $HINDSIGHT_PASSPHRASE" in out, out
    assert "Losing the passphrase loses the backups of the secret files" in out, out
    assert not (workdir / "hindsight.key").exists(), "a passphrase replaces the key file"
    code, status = run_json(capsys, "status")
    assert code == 0 and isinstance(status, dict), "the passphrase opens the repository"


def test_secrets_repository_opens_without_its_key_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["init"])
    fill(workdir, 50)
    (workdir / "hindsight.key").rename(workdir / "away.key")
    capsys.readouterr()
    code, status = run_json(capsys, "status")
    assert code == 0 and isinstance(status, dict) and status["journal"]["events"] == 50
    assert main(["journal", "tail", "-n", "1"]) == 0, "the journal reads without the key"


def test_init_encrypt_creates_private_key(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protected = workdir / "app"
    protected.mkdir()
    code, report = run_json(capsys, "init", "--encrypt", "--protect", "app")
    assert code == 0 and isinstance(report, dict)
    assert report["encrypted"] is True and report["protected_dirs"] == [str(protected)]
    key = workdir / "hindsight.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, "the key file must be private"
    assert main(["init", "--encrypt"]) == 2, "a second init refuses to overwrite"
    assert "already exists" in capsys.readouterr().err


def test_init_encrypt_warns_that_losing_the_key_loses_backups(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--encrypt"]) == 0
    assert "Losing the key file loses the backups" in capsys.readouterr().out


def test_init_with_bad_input_creates_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--protect", "missing-dir"]) == 2
    assert main(["init", "--mongodb", "http://not-mongo"]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "sources.mongodb" in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in workdir.iterdir()) == [], "nothing may be left behind"


def test_mongodb_password_never_printed(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--mongodb", "mongodb://backup:s3cr3t-pw@db:27017"]) == 0
    assert main(["status"]) == 0
    text = capsys.readouterr()
    code, status = run_json(capsys, "status")
    assert code == 0 and "s3cr3t-pw" not in json.dumps(status) + text.out + text.err


def test_status_and_stats(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", "--encrypt"])
    fill(workdir)
    capsys.readouterr()
    code, status = run_json(capsys, "status")
    assert code == 0 and isinstance(status, dict)
    assert status["encrypted"] and status["journal"]["events"] == 300
    code, stats = run_json(capsys, "journal", "stats")
    assert isinstance(stats, dict) and stats["sealed_segments"] >= 1, stats
    assert stats["last_seq"] == 300


def test_tail_prints_last_events_without_document_bodies(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["init"])
    fill(workdir)
    capsys.readouterr()
    assert main(["journal", "tail", "-n", "3", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in lines] == [298, 299, 300]
    assert set(lines[0]["after"]) == {"document_bytes"}, "documents are summarised, not dumped"
    assert main(["journal", "tail", "--from-seq", "10", "-n", "0"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 291


def test_tail_since_rejects_gibberish(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init"])
    assert main(["journal", "tail", "--since", "yesterday-ish"]) == 2
    assert "cannot read time" in capsys.readouterr().err


def test_verify_clean_then_corrupt(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", "--encrypt"])
    fill(workdir)
    capsys.readouterr()
    code, report = run_json(capsys, "journal", "verify")
    assert code == 0 and isinstance(report, dict) and report["ok"], report
    sealed = sorted((workdir / "backups/journal").glob("*.seg"))[0]
    os.chmod(sealed, 0o644)
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x40
    sealed.write_bytes(bytes(data))
    code, report = run_json(capsys, "journal", "verify")
    assert code == 1 and isinstance(report, dict) and not report["ok"]
    located = [p for p in report["problems"] if p["offset"] is not None]
    assert located and located[0]["path"] == f"journal/{sealed.name}", report["problems"]
    assert located[0]["offset"] <= len(data) // 2, "the bad frame starts at or before the flip"


def test_wrong_key_is_exit_5_without_traceback(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["init", "--encrypt"])
    other = workdir / "other.key"
    create_key_file(other)
    capsys.readouterr()
    assert main(["status", "--key-file", str(other)]) == 5
    err = capsys.readouterr().err
    assert "does not unlock" in err and "Traceback" not in err, err


def test_missing_config_is_explained(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 2
    assert "hindsight init" in capsys.readouterr().err


def test_config_from_env_var(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = workdir / "etc"
    elsewhere.mkdir()
    assert main(["init", "--config", str(elsewhere / "hindsight.toml")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("HINDSIGHT_CONFIG", str(elsewhere / "hindsight.toml"))
    code, status = run_json(capsys, "status")
    assert code == 0 and isinstance(status, dict)
    assert status["config"] == str(elsewhere / "hindsight.toml")


def test_console_script_runs(workdir: Path) -> None:
    exe = Path(sys.executable).with_name("hindsight")
    done = subprocess.run([exe, "status"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "hindsight init" in done.stderr, done.stderr


def test_key_rotate(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", "--encrypt"])
    fill(workdir, 50)
    capsys.readouterr()
    code, report = run_json(capsys, "key", "rotate")
    assert code == 0 and report == {"active_key_id": 2}
    fill(workdir, 50)
    code, verified = run_json(capsys, "journal", "verify")
    assert code == 0 and isinstance(verified, dict) and verified["events"] == 100


def test_key_rotate_in_a_secrets_repository(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["init"])
    key = read_key_file(workdir / "hindsight.key")
    with Repository.open(workdir / "backups", key, writable=True) as repo:
        old = repo.blobs.put_bytes(b"API_TOKEN=before\n", secret=True)
    capsys.readouterr()
    code, report = run_json(capsys, "key", "rotate")
    assert code == 0 and report == {"active_key_id": 2}, "the secret files' key rotates"
    with Repository.open(workdir / "backups", key, writable=True) as repo:
        new = repo.blobs.put_bytes(b"API_TOKEN=after\n", secret=True)
        assert repo.blobs.read(old.id) == b"API_TOKEN=before\n"
        assert repo.blobs.read(new.id) == b"API_TOKEN=after\n"


def test_key_rotate_refuses_legacy_plain_repository(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["init"])
    shutil.rmtree(workdir / "backups")
    (workdir / "hindsight.key").unlink()
    Repository.init(workdir / "backups", None)  # made before every repository had a key
    assert main(["key", "rotate"]) == 3
    assert "not encrypted" in capsys.readouterr().err


def test_verify_reports_a_damaged_pack(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", "--encrypt"])
    secret = read_key_file(workdir / "hindsight.key")
    with Repository.open(workdir / "backups", secret, writable=True) as repo:
        blob = repo.blobs.put_bytes(os.urandom(200_000))
        repo.blobs.seal()
    (pack,) = (workdir / "backups/blobs/packs").glob("*.pack")
    os.chmod(pack, 0o644)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    capsys.readouterr()
    code, report = run_json(capsys, "journal", "verify")
    assert code == 1 and isinstance(report, dict), report
    paths = {p["path"] for p in report["problems"] if p["offset"] is not None}
    assert paths == {f"blobs/packs/{pack.name}"}, report["problems"]
    with Repository.open(workdir / "backups", secret) as repo, pytest.raises(HindsightError):
        repo.blobs.read(blob.id)


def test_tail_follow_prints_new_events_as_they_arrive(workdir: Path) -> None:
    main(["init"])
    fill(workdir, 50)
    exe = Path(sys.executable).with_name("hindsight")
    with subprocess.Popen(
        [exe, "journal", "tail", "--follow", "-n", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as tail:
        assert tail.stdout is not None
        try:
            assert json.loads(_line(tail.stdout))["seq"] == 50, "history first"
            with Repository.open(workdir / "backups", None, writable=True) as repo:
                repo.log.append([conversation(1000)])
            assert json.loads(_line(tail.stdout))["seq"] == 51, "then each new event"
        finally:
            tail.terminate()


def _line(stream: IO[str], timeout: float = 10.0) -> str:
    """The next line of a child's output, or a failure (never a hang) after ``timeout``."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return stream.readline()


def test_init_api_turns_the_api_on_and_the_default_leaves_it_off(workdir: Path) -> None:
    import tomllib

    from hindsight.config import load_config
    from hindsight.config_template import render_default_config

    app = workdir / "app"
    app.mkdir()
    assert main(["init", "--protect", str(app), "--api"]) == 0
    assert load_config(workdir / "hindsight.toml").api.enabled is True
    assert tomllib.loads(render_default_config())["api"]["enabled"] is False
