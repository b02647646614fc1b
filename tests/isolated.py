"""Run a snippet in a fresh interpreter, for inputs that once killed the
process (an allocation failure aborts; a panic across FFI aborts), so such a
regression fails one test instead of the whole run.

The child's address space is capped (``RLIMIT_AS``) so a huge allocation
fails fast instead of swapping the machine: the cap turns "allocates 16 GB"
into an abort before the fix and changes nothing after it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: Address-space cap for the child: far above what the snippets need.
MEMORY_LIMIT = 2 << 30

_PRELUDE = f"""\
import resource
resource.setrlimit(
    resource.RLIMIT_AS, ({MEMORY_LIMIT}, resource.getrlimit(resource.RLIMIT_AS)[1])
)
"""


def run_isolated(code: str, *, timeout: float = 60.0) -> str:
    """Run ``code`` in a child interpreter; return its stdout.

    Fails (with the child's stderr) if the child did not exit normally, e.g.
    was killed by SIGABRT (return code -6)."""
    res = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert res.returncode == 0, (
        f"the child exited with {res.returncode} (negative: killed by that signal)\n"
        f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-4000:]}"
    )
    return res.stdout
