"""Where a request's CPU work runs: inline on the event loop when it is small, else on a worker thread.

A hop to a worker thread and back costs more than the small work itself: about 130 us through an
executor (470 us through anyio's `run_in_threadpool`), and more under load, when the worker waits for
the GIL that the busy event loop holds; decoding a 28x28 PNG or encoding one costs about 40 us. So work
on a few small images runs inline, and anything larger goes to the pool, where Pillow's and
onnxruntime's C code release the GIL. The bounds keep the longest inline step well under a
millisecond (deflate expands at most about 1000:1, so 8 KiB of PNG is at most 8 MB of pixels even for a
crafted file; a typical 8 KiB is a handful of small images).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

INLINE_MAX_BYTES = 8 * 1024  # encoded image bytes in a request decoded on the event loop
INLINE_MAX_IMAGES = 8  # and at most this many images (decoded inputs or PNG outputs)
INLINE_MAX_VALUES = 8 * 784  # output values encoded to PNG on the event loop (8 Fashion-MNIST images)


def small_inputs(payloads: list[Any]) -> bool:
    """True when decoding these inputs (image bytes or base64 text) is cheaper than a thread hop."""
    if len(payloads) > INLINE_MAX_IMAGES or any(not isinstance(p, bytes | str) for p in payloads):
        return False  # JSON arrays: their sizes are known only once converted
    return sum(len(p) for p in payloads) <= INLINE_MAX_BYTES


class Workers:
    """The service's thread pool for CPU work that does not fit inline (image batches, /loglik)."""

    def __init__(self, max_workers: int):
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vae-cpu")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    async def run_if_large(self, large: bool, fn: Callable[..., T], *args: Any) -> T:
        return await self.run(fn, *args) if large else fn(*args)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
