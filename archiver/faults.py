"""Crash points for the crash-safety tests.

`ARCHIVER_CRASH_AT=NAME[:N]` makes the N-th (default first) passage through crash point NAME kill the whole
process group with SIGKILL, as a power cut or the OOM killer would, at exactly the moment a test wants to prove
safe (between finishing a WARC and renaming it, between writing state and recording it...). Without the variable
a crash point is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("ARCHIVER_CRASH_AT", "")
_NAME, _, _N = _SPEC.partition(":")
_LEFT = {_NAME: int(_N or 1)} if _NAME else {}


def crash_point(name: str) -> None:
    if name in _LEFT:
        _LEFT[name] -= 1
        if _LEFT[name] == 0:
            os.killpg(os.getpgrp(), signal.SIGKILL)
