"""Process-wide thread settings that must be in place before torch (and its OpenMP runtime) is imported.

`OMP_WAIT_POLICY=PASSIVE`: OpenMP worker threads sleep at the end of a parallel region instead of
spinning. A server shares its cores with the event loop, the tokeniser threads and (often) other
processes; spinning threads then burn the very cores the thread they wait for needs, and one forward pass
can take 10–50× longer (measured with `benchmarks/overhead.py` on a busy 2-core machine: p50 forward of
MiniLM on one short text 172 ms with the default policy, 16–48 ms with PASSIVE). A value already in the
environment is kept.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("jinaserve.runtime.threads")


def apply_thread_env() -> None:
    """Set the OpenMP wait policy for serving, unless the user chose one or torch is already loaded."""
    if "OMP_WAIT_POLICY" in os.environ:
        return
    if "torch" in sys.modules:
        log.debug("torch already imported; OMP_WAIT_POLICY left unset")
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
