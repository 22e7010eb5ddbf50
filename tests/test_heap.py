"""The collector in the run's long-lived worker processes (exchange/runner/processes.py
``settle_heap``): the start-up heap frozen, young collections rare, cycles still collected."""

from __future__ import annotations

import subprocess
import sys

from exchange.runner.processes import YOUNG_THRESHOLD

from .harness import ROOT

PROBE = """
import gc, weakref
from exchange.runner.processes import settle_heap, YOUNG_THRESHOLD
start_up = [[i] for i in range(20_000)]   # lives all run long
class Node: pass
garbage = Node(); garbage.me = garbage    # a cycle made before: collected, not frozen for good
dead = weakref.ref(garbage); del garbage
before = gc.get_threshold()
assert settle_heap() == before
assert dead() is None, "a cycle made before start-up ended was frozen instead of collected"
assert gc.get_freeze_count() >= 20_000, gc.get_freeze_count()
assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2]), gc.get_threshold()
later = Node(); later.me = later          # a cycle made while running: still collected
dead = weakref.ref(later); del later
gc.collect()
assert dead() is None, "a cycle made after start-up was never collected"
frozen = gc.get_freeze_count()
from exchange.runner.processes import release_heap
released = Node(); released.me = released  # alive at settle, garbage after: the controller's case
gone = weakref.ref(released)
thresholds = settle_heap()
del released
release_heap(thresholds)
gc.collect()
assert gone() is None, "a cycle frozen by settle_heap was not collectable after release_heap"
assert gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds, (gc.get_freeze_count(), gc.get_threshold())
print("ok", frozen)
"""


def test_a_worker_freezes_its_start_up_heap_collects_later_cycles_and_makes_young_collections_rare():
    """And a process that lives on after a run (the run controller) releases what it froze."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")
    assert YOUNG_THRESHOLD > 700  # CPython's default, which the workers replace
