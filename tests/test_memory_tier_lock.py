"""MemoryTier's lock when its holder is stuck: a fork while another thread
compares keys, and Ctrl-C while waiting for a holder that never lets go."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

# A key whose __eq__ sleeps (releasing the GIL) while the tier's lock is held.
SLOW_KEY = """
import os, threading, time
from overdrive.cache import MemoryTier

class SlowKey:
    def __init__(self, seconds):
        self.seconds = seconds
    def __hash__(self):
        return 1
    def __eq__(self, other):
        time.sleep(self.seconds)
        return self is other

tier = MemoryTier(max_entries=100)
first = SlowKey(0)
tier.set(first, "first")
tier.set("plain", 42)
inside = threading.Event()

def hold(seconds):
    key = SlowKey(seconds)
    inside.set()
    tier.get(key)  # compares against `first` under the lock: sleeps there

threading.Thread(target=hold, args=(5.0,), daemon=True).start()
inside.wait()
time.sleep(0.2)  # the thread is inside __eq__, holding the tier's lock
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SLOW_KEY + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=50,
    )


def test_a_forked_child_can_use_a_tier_another_thread_held_at_fork() -> None:
    res = run(
        """
        pid = os.fork()
        if pid == 0:
            # the holder thread does not exist here: without the fork epoch
            # this get would wait forever
            ok = tier.get("plain") == 42 and tier.set("child", 1) is None
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "child 0"


def test_ctrl_c_reaches_a_thread_waiting_for_the_tier() -> None:
    res = run(
        """
        import _thread
        threading.Timer(0.3, _thread.interrupt_main).start()
        start = time.monotonic()
        try:
            tier.get("plain")  # waits for the holder (5 s)
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - start, 1) < 3.0)
        else:
            print("not interrupted")
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "interrupted True"
