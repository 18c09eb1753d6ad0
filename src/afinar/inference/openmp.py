"""OpenMP's waiting in a process that serves with llama.cpp.

llama.cpp's threads meet at an OpenMP barrier many times per token. GNU OpenMP spins a while at
each barrier before it sleeps (``GOMP_SPINCOUNT``, 300,000 turns by default). That is right for
one multi-threaded server alone on its cores, and harmful beside busy neighbours (the one-thread
lanes of a burst over several adapters, ``inference/llamacpp_pool.py``): a thread spins on a core
a neighbour needs while the thread it waits for is not running. A short spin keeps single-stream
speed and gives the cores back quickly.

GNU OpenMP also *throttles* the spin, to 100 turns, once the process holds more OpenMP threads
than it has CPUs, which two multi-threaded llama.cpp servers do (two bases, or a lane's old and
new server): then each decodes about 30 % slower, even while the other is idle.
``OMP_WAIT_POLICY=active`` makes the throttled spin 1000 turns too (never more than
``GOMP_SPINCOUNT``), so a second server costs nothing; with ``GOMP_SPINCOUNT=1000`` an idle
server still uses no CPU. Measured in docs/serving-llamacpp.md.

The runtime reads the variables once, when it loads, so :func:`shorten_spin_for_serving` must
run before anything loads OpenMP (torch does, and llama.cpp). It sets them only where the
operator set neither. Training runs in child processes that get OpenMP's defaults back
(:func:`training_env`): torch training is tuned with them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SERVING_ENV = {"GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": "active"}
_set_here = False  # whether this process set SERVING_ENV (so its training children drop it)


def shorten_spin_for_serving() -> bool:
    """Set the serving OpenMP waits for this process unless the operator set either; True if set."""
    global _set_here
    if any(name in os.environ for name in SERVING_ENV):
        return False
    os.environ.update(SERVING_ENV)
    _set_here = True
    return True


def training_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a training child: without the serving waits this process set for itself."""
    out = dict(env)
    if _set_here:
        for name, value in SERVING_ENV.items():
            if out.get(name) == value:
                del out[name]
    return out
