"""Interpreter settings for serving: the GIL's switch interval and the garbage collector.

Why the switch interval: onnxruntime releases the GIL while a batch runs and needs it back to hand over the
outputs. The event loop holds the GIL while it works and drops it only when forced, after the switch
interval (5 ms by default), so a batch's results waited on the busy loop far longer than the batch took. At
50 us the batch thread gets the GIL back within a few of the loop's steps.

Why the collector: a full collection walks every live object (the web stack, pydantic's schemas, the
manifests) and stalls every request in flight; those were the slowest requests. After loading, `gc.freeze()`
moves the objects that live as long as the process out of the collector's sight, and a higher young-generation
threshold collects less often; requests' own objects are freed by reference counting as before.
The measurements: docs/performance.md, "Why this server stack".
"""

from __future__ import annotations

import gc
import sys

from service.settings import Settings


def tune_interpreter(settings: Settings) -> None:
    """At start-up: the switch interval and the collector's threshold (process-wide)."""
    sys.setswitchinterval(settings.gil_switch_interval_us / 1e6)
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_threshold, older, oldest)


def settle_interpreter() -> None:
    """Once the models are loaded: what exists now lives as long as the process; the collector skips it."""
    gc.collect()
    gc.freeze()
