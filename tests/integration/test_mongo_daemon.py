"""``hindsight run`` protecting MongoDB and files, as real processes: SIGKILL, server outages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymongo.errors import AutoReconnect

from hindsight.config import load_config
from hindsight.wiring import open_repository
from journal.events import ChangeEvent, Source
from tests.integration.mongo_journal import duplicates, journal_state, live_state, stream_positions
from tests.integration.mongo_server import MongoServer

HINDSIGHT = str(Path(sys.executable).parent / "hindsight")
NS = "chatbot.conversations"


@pytest.fixture
def workdir(tmp_path: Path, mongo_server: MongoServer) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    with mongo_server.client() as client:
        client.chatbot.conversations.insert_one({"_id": "seed", "m": "hola"})
    subprocess.run(
        [
            HINDSIGHT,
            "init",
            "--repo",
            "backups",
            "--protect",
            str(app),
            "--mongodb",
            mongo_server.uri,
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    return tmp_path


def journal(workdir: Path) -> list[ChangeEvent]:
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config) as repo:
        return list(repo.log.read())


class Daemon:
    """``hindsight run`` in ``workdir``, its output in a log file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.log = workdir, workdir / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [HINDSIGHT, "run"], cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )

    def signal(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(30)
        self.process = None
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def daemon(workdir: Path) -> Iterator[Daemon]:
    d = Daemon(workdir)
    yield d
    if d.process is not None:
        d.process.kill()
        d.process.wait()


def wait_for(check: Callable[[], bool], what: str, daemon: Daemon, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; daemon said:\n{daemon.output()}")
        time.sleep(0.1)


def insert_with_retry(server: MongoServer, ids: range) -> None:
    """The application's writes, retried as an application would across a server restart."""
    with server.client() as client:
        for start in range(ids.start, ids.stop, 50):
            batch = [
                {"_id": i, "text": "¿precio?" * 5} for i in range(start, min(start + 50, ids.stop))
            ]
            for _ in range(50):
                try:
                    client.chatbot.conversations.insert_many(batch)
                    break
                except AutoReconnect:
                    time.sleep(0.1)
            time.sleep(0.01)


def caught_up(workdir: Path, server: MongoServer) -> Callable[[], bool]:
    return lambda: journal_state(journal(workdir)).get(NS) == live_state(server.uri, [NS]).get(NS)


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    workdir: Path, daemon: Daemon, mongo_server: MongoServer
) -> None:
    daemon.start()
    wait_for(lambda: any(e.key == "sync-end" for e in journal(workdir)), "initial sync", daemon)
    writer = threading.Thread(target=insert_with_retry, args=(mongo_server, range(3000)))
    writer.start()
    wait_for(lambda: len(journal(workdir)) > 800, "capture under way", daemon)
    assert daemon.signal(signal.SIGKILL) == -signal.SIGKILL
    time.sleep(0.3)
    daemon.start()
    writer.join()
    wait_for(caught_up(workdir, mongo_server), "the journal to catch up", daemon)
    assert daemon.signal(signal.SIGTERM) == 0, daemon.output()

    events = journal(workdir)
    assert len(journal_state(events)[NS]) == 3001
    dup = duplicates(stream_positions(events))
    assert not dup, f"{len(dup)} changes journaled twice after the SIGKILL"
    assert sum(1 for e in events if e.key == "sync-start") == 1, "no second initial sync"


def test_files_stay_protected_while_mongodb_is_down_and_capture_recovers(
    workdir: Path, daemon: Daemon, mongo_server: MongoServer
) -> None:
    daemon.start()
    wait_for(lambda: any(e.key == "sync-end" for e in journal(workdir)), "initial sync", daemon)
    mongo_server.stop()
    (workdir / "app" / "config.py").write_text("DEBUG = True\n")

    def file_captured() -> bool:
        return any(
            e.source is Source.FILESYSTEM and e.key == "config.py" and e.op.value == "MODIFY"
            for e in journal(workdir)
        )

    wait_for(file_captured, "the file change while MongoDB is down", daemon)
    wait_for(lambda: "MongoDB mongodb unavailable" in daemon.output(), "the outage log", daemon)
    mongo_server.start()
    insert_with_retry(mongo_server, range(100))
    wait_for(caught_up(workdir, mongo_server), "capture after the restart", daemon)
    assert daemon.signal(signal.SIGTERM) == 0
    assert "mongodb mongodb: streaming" in daemon.output(), daemon.output()[-2000:]
    assert os.path.exists(workdir / "backups")
