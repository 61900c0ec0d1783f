"""The collector's process settings, which the benches share so they measure what runs."""

from __future__ import annotations

import gc
import sys

from collector.main import GC_THRESHOLDS, SWITCH_INTERVAL, tune_runtime


def test_the_runtime_is_set_for_a_servers_heap_and_what_is_built_is_frozen() -> None:
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    kept = [{"built": "at start-up"}]
    try:
        tune_runtime()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert sys.getswitchinterval() == SWITCH_INTERVAL
        assert gc.get_freeze_count() >= len(kept)
        assert not any(kept[0] is item for item in gc.get_objects())  # no pass walks it now
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
