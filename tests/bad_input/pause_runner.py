"""Run ``hoe ARGS`` with one function made to stop half-way, so a test can signal a real run at that point.

    python pause_runner.py MODULE:ATTR:N hoe-args...     pause before the N-th call of MODULE.ATTR (ATTR may
                                                         be CLASS.METHOD)
    python pause_runner.py old-aside hoe-args...         pause right after an output was renamed aside
                                                         (between the two renames that replace it)

When the point is reached it prints ``PAUSED`` on stderr and sleeps, waiting for the test's signal.
"""

from __future__ import annotations

import importlib
import os
import sys
import time


def pause(seconds: float = 120) -> None:
    print("PAUSED", file=sys.stderr, flush=True)
    time.sleep(seconds)


def patch_call(spec: str) -> None:
    module_name, attr, n = spec.split(":")
    owner = importlib.import_module(module_name)
    *path, attr = attr.split(".")
    for name in path:
        owner = getattr(owner, name)
    original, calls = getattr(owner, attr), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(n):
            pause()
        return original(*args, **kwargs)

    setattr(owner, attr, wrapper)


def patch_old_aside() -> None:
    original = os.replace

    def replace(src, dst, *args, **kwargs):
        original(src, dst, *args, **kwargs)
        if ".old-" in os.path.basename(str(dst)):
            pause(3)  # signals are held back here, so the sleep is not cut short: keep it short

    os.replace = replace


if __name__ == "__main__":
    point, args = sys.argv[1], sys.argv[2:]
    patch_old_aside() if point == "old-aside" else patch_call(point)
    from hoe.cli import run

    sys.exit(run(args))
