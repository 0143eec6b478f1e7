"""The workdir lock: one training run per workdir at a time.

`porejax train` holds WORKDIR/train.lock while it runs: an exclusive `fcntl.flock` on the file, which
holds the owner's PID, host and start time as JSON. The kernel drops the flock when its process ends in
any way (a crash, SIGKILL, power loss on a local disk), so a lock file left behind by a killed run is
stale by construction: the next run takes it over and says whose it was. A second run while the owner
lives is refused at once, naming the owner. The file is removed when the run ends.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from porejax.errors import PorejaxError

LOCK_FILE = "train.lock"


def _owner(text: str) -> str:
    """'PID p on host h since t' from a lock file's JSON (or a note that it is unreadable)."""
    try:
        info = json.loads(text)
        return f"PID {info['pid']} on host {info['host']} since {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process (the lock file is unreadable)"


def _acquire(path: Path) -> tuple[int, str]:
    """(open descriptor holding the flock on `path`, the previous owner's text or ''); raises when held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(fd) as fh:
                owner = _owner(fh.read())
            raise PorejaxError(
                f"{path.parent} is in use by another training run ({owner}): wait for it to "
                "finish or stop it, or choose another --workdir"
            ) from None
        try:  # a run that ended between our open and flock removed the file: lock the new one instead
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        os.close(fd)


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[Path]:
    """Hold WORKDIR/train.lock for the block (creating WORKDIR if needed); yields the lock file's path.

    Refuses (PorejaxError naming the owner's PID, host and start time) while another process holds it.
    Takes over, with a notice on stderr, a lock file left by a run that ended without removing it. On
    exit the lock file is removed, and so is WORKDIR if this call created it and the block left it empty.
    """
    workdir = Path(workdir)
    created = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    fd, previous = _acquire(path)
    try:
        if previous:
            print(
                f"porejax: taking over the lock of {workdir} from a run that is no longer running ({_owner(previous)})",
                file=sys.stderr,
                flush=True,
            )
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode(), 0)
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                workdir.rmdir()
