"""Lock files that hold across machines: a live holder refuses, a killed holder's lock is taken over
with a warning naming it, a lock of another host goes stale only by its heartbeat, racing takers
never both win, and a holder whose lock was taken over is stopped before its next write."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from robustune.errors import FolderLockedError
from robustune.files import LOCK_NAME, FileLock, LockLostError, check_folder_lock, claim, folder_lock

HOLD = ("import sys, time\nfrom robustune.files import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n")


def test_live_holder_refuses_and_a_killed_holder_is_taken_over(tmp_path, caplog):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        record = json.loads((tmp_path / LOCK_NAME).read_text())
        assert record["pid"] == proc.pid and record["host"] == socket.gethostname() and record["heartbeat"]
        with pytest.raises(FolderLockedError, match=f"pid {proc.pid} on host {socket.gethostname()}"):
            with folder_lock(tmp_path):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert (tmp_path / LOCK_NAME).exists()  # kill -9 leaves the file behind
    with caplog.at_level(logging.WARNING):
        with folder_lock(tmp_path) as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"taking over the stale run folder lock {tmp_path / LOCK_NAME} (pid {proc.pid}" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()  # released on exit


def _fake(path, host, age, pid=4242):
    path.write_text(json.dumps({"host": host, "pid": pid, "token": "t", "heartbeat": time.time() - age}))
    os.utime(path, (time.time() - age, time.time() - age))


def test_other_hosts_lock_goes_stale_by_its_heartbeat(tmp_path, caplog):
    lock = tmp_path / LOCK_NAME
    _fake(lock, "node-17", age=5)  # its holder beat 5 s ago on another machine: alive
    with pytest.raises(FolderLockedError, match="pid 4242 on host node-17, heartbeat 5 s ago"):
        with folder_lock(tmp_path):
            pass
    _fake(lock, "node-17", age=3600)  # silent for an hour
    with caplog.at_level(logging.WARNING):
        with folder_lock(tmp_path):
            pass
    assert "taking over the stale run folder lock" in caplog.text and "host node-17" in caplog.text


def test_heartbeat_keeps_a_lock_fresh_and_a_lost_lock_stops_writes(tmp_path):
    lock = FileLock(tmp_path / "x.lock", heartbeat=0.05)
    assert lock.acquire()
    first = lock.read()["heartbeat"]
    time.sleep(0.3)
    assert lock.read()["heartbeat"] > first  # the daemon thread beats
    lock.release()
    with folder_lock(tmp_path) as path:
        check_folder_lock(tmp_path)  # ours: fine
        _fake(path, "node-3", age=0)  # a taker on another machine replaced it (we were frozen)
        with pytest.raises(LockLostError, match="taken over by node-3/4242"):
            check_folder_lock(tmp_path)


TAKE = ("import sys, time, pathlib\nfrom robustune.files import claim\n"
        "lock = claim(sys.argv[1], stale_after=3600)\n"
        "pathlib.Path(sys.argv[2]).write_text('won' if lock else 'lost')\n"
        "while lock and not pathlib.Path(sys.argv[3]).exists(): time.sleep(0.02)\n")


def test_racing_takers_of_a_dead_holders_lock_never_both_win(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone on this host
    lock = tmp_path / "cell.lock"
    _fake(lock, socket.gethostname(), age=0, pid=dead.pid)
    done = tmp_path / "done"
    procs = [subprocess.Popen([sys.executable, "-c", TAKE, str(lock), str(tmp_path / f"r{i}"), str(done)])
             for i in range(4)]
    try:
        deadline = time.time() + 120
        while not all((tmp_path / f"r{i}").exists() for i in range(4)):
            assert time.time() < deadline
            time.sleep(0.05)
        results = sorted((tmp_path / f"r{i}").read_text() for i in range(4))
        assert results == ["lost", "lost", "lost", "won"]
    finally:
        done.touch()
        for p in procs:
            p.wait(timeout=60)
    again = claim(lock)
    assert again is not None  # released by the winner: free again
    again.release()
