"""One writer per output folder: a lock file that names its holder.

``with folder_lock(out_dir, "preprocessing"):`` creates ``<out_dir>/.lock`` atomically
(``O_CREAT | O_EXCL``) holding the writer's pid, host, start time and command line, and removes
it on exit. A second writer is refused with one line naming the holder (:class:`FolderLockedError`).
A lock left by a process that no longer runs on this host (``kill -9``, a crash) is stale: it
is cleared with a warning and the new writer proceeds. A lock from another host cannot be
checked: it is refused, and the message says which file to delete once that writer is gone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class FolderLockedError(PipelineError):
    """Another process is writing the folder."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # exists, owned by another user
        return True
    return True


def read_lock(folder: str | Path) -> dict[str, Any] | None:
    """The holder recorded in ``<folder>/.lock`` (None without a lock; ``{}`` if unreadable)."""
    path = Path(folder) / LOCK_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _is_stale(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    return (holder.get("host") == socket.gethostname() and isinstance(pid, int)
            and pid != os.getpid() and not _process_alive(pid))


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold ``<folder>/.lock`` (the folder is created) while the block writes ``folder``.
    Folders created here and left empty by the block (a failed start) are removed on exit."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]     # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    record = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
              "started": _dt.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv)[:300]}
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(folder)
            if holder is None:                      # released in between: try again
                continue
            if holder and _is_stale(holder):
                log.warning("%s: clearing a stale lock of pid %s (%s since %s, no longer "
                            "running)", path, holder.get("pid"), holder.get("what"),
                            holder.get("started"))
                path.unlink(missing_ok=True)
                continue
            raise FolderLockedError(
                f"{folder}: {holder.get('what', 'another process')} is writing it (pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')} since "
                f"{holder.get('started', '?')}: {holder.get('command', '?')}); wait for it to "
                f"finish, or delete {path} if that process is gone") from None
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out)
        break
    else:
        raise FolderLockedError(f"{folder}: could not take {path}; try again")
    try:
        yield path
    finally:
        if (read_lock(folder) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
        for made in created:
            if not made.is_dir() or any(made.iterdir()):
                break
            made.rmdir()
