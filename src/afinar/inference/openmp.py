"""OpenMP's spin-wait in a process that serves with llama.cpp.

llama.cpp's threads meet at an OpenMP barrier many times per token. GNU OpenMP spins a while at
each barrier before it sleeps (``GOMP_SPINCOUNT``, 300,000 turns by default). That is right for
one multi-threaded server alone on its cores, and harmful beside busy neighbours (the one-thread
lanes of a burst over several adapters, ``inference/llamacpp_pool.py``): a thread spins on a core
a neighbour needs while the thread it waits for is not running. A short spin keeps single-stream
speed and gives the cores back quickly (``bench/serve_backends.py``, docs/serving-llamacpp.md).

The runtime reads the variable once, when it loads, so :func:`shorten_spin_for_serving` must run
before anything loads OpenMP (torch does, and llama.cpp). It never overrides a value the operator
set. Training runs in child processes that get the usual spin back (:func:`training_env`): torch
training is tuned with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SPIN_ENV = "GOMP_SPINCOUNT"
SERVING_SPIN = "1000"
_set_here = False  # whether this process set SPIN_ENV (so its training children drop it)


def shorten_spin_for_serving() -> bool:
    """Set a short OpenMP spin for this process unless the operator set one; True if set."""
    global _set_here
    if SPIN_ENV in os.environ:
        return False
    os.environ[SPIN_ENV] = SERVING_SPIN
    _set_here = True
    return True


def training_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a training child: without the serving spin this process set for itself."""
    out = dict(env)
    if _set_here and out.get(SPIN_ENV) == SERVING_SPIN:
        del out[SPIN_ENV]
    return out
