"""One writer per folder: a live holder refuses a second writer by name, a dead one's lock is
cleared, and preprocessing takes the lock for its whole run."""

import json
import os
import socket
import subprocess
import sys

import pytest

from pipeline.locks import LOCK_NAME, FolderLockedError, folder_lock, read_lock


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    with folder_lock(tmp_path / "shards", "preprocessing") as path:
        holder = read_lock(tmp_path / "shards")
        assert holder["pid"] == os.getpid() and holder["what"] == "preprocessing"
        # The same folder from another live process: simulate its lock with this process's pid
        # seen from a child, which must be refused.
        code = ("import sys; from pipeline.locks import folder_lock\n"
                "try:\n    folder_lock(sys.argv[1], 'training').__enter__()\n"
                "except Exception as exc:\n    print(type(exc).__name__, exc); sys.exit(3)\n")
        child = subprocess.run([sys.executable, "-c", code, str(tmp_path / "shards")],
                               capture_output=True, text=True, cwd=os.getcwd())
        assert child.returncode == 3, child.stderr
        assert "FolderLockedError" in child.stdout and "preprocessing is writing it" in child.stdout
        assert f"pid {os.getpid()}" in child.stdout and str(path) in child.stdout
    assert not (tmp_path / "shards" / LOCK_NAME).exists()         # released on exit


def test_a_lock_from_a_dead_process_is_cleared(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    pid = int(dead.stdout)                                  # finished: no longer running
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                  "what": "preprocessing"}))
    with folder_lock(tmp_path, "preprocessing"):
        assert read_lock(tmp_path)["pid"] == os.getpid()
    assert "stale lock" in caplog.text


def test_a_lock_from_another_host_is_refused(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere",
                                                  "what": "preprocessing"}))
    with pytest.raises(FolderLockedError, match="on elsewhere .* delete .*lock if that process"):
        with folder_lock(tmp_path, "preprocessing"):
            pass
    assert read_lock(tmp_path)["host"] == "elsewhere"              # not removed
