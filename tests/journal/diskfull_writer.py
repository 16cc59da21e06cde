"""Child process of the disk-full test: appends under a file-size limit until writes fail.

Run as ``python diskfull_writer.py REPO LIMIT_BYTES``. ``RLIMIT_FSIZE`` makes a write that
would grow any file past LIMIT fail with EFBIG, as a full disk fails with ENOSPC. With small
segments the manifest hits the limit first (sealing fails, the segment stays active), then
the active segment (appends fail). Prints ``ack <last seq>`` per acknowledged append,
``fail <message>`` per refused one, and ``note <text>`` per journal note at the end. After
three refusals the limit is lifted (space freed) and appending must simply go on.
"""

from __future__ import annotations

import resource
import signal
import sys
from pathlib import Path

from journal.errors import HindsightError
from journal.repository import Repository
from tests.journal.crash_writer import event_for


def main(path: str, limit: int) -> None:
    """Append batches of 50 until three are refused, free the space, append two more."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    repo = Repository.open(Path(path), None, writable=True, segment_max_bytes=16 * 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    failures, resumed, seq = 0, 0, repo.log.next_seq
    while resumed < 2:
        if failures == 3:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space freed: go on
            resumed += 1
        try:
            got = repo.log.append([event_for(s) for s in range(seq, seq + 50)])
        except HindsightError as exc:
            failures += 1
            print(f"fail {exc}", flush=True)
            continue
        assert got.first == seq, f"acknowledged {got.first}, expected {seq}"
        seq = got.last + 1
        print(f"ack {got.last}", flush=True)
    for note in repo.log.notes:
        print(f"note {note}", flush=True)
    repo.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
