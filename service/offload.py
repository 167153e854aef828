"""Where a request's CPU work runs: inline on the event loop when it is small, else on a worker thread.

A hop to a worker thread and back costs more than small work itself, and more under load, when the worker
waits for the GIL that the busy event loop holds; decoding or encoding one small PNG costs a few tens of
microseconds. Decoding many small PNGs gains nothing in the pool either: it is per-file Python work that
holds the GIL, so the pool only adds GIL hand-overs (docs/performance.md has the measurements). So inline:
  - a few small images (at most INLINE_MAX_IMAGES and INLINE_MAX_BYTES in all): the longest step stays
    well under a millisecond (deflate expands at most about 1000:1, so 8 KiB of PNG is at most 8 MB of
    pixels even for a crafted file);
  - PNG files that each declare no more pixels than the model's image and are at most INLINE_MAX_BYTES:
    decoding is bounded by the request's image limit times the model's size;
  - output images: at most INLINE_MAX_IMAGES of at most INLINE_MAX_VALUES values in all;
  - a likelihood's mean of at most INLINE_MAX_WORK element operations (a parameter costs none; a discretized
    logistic's mean, 255 sigmoids per pixel and component, goes to the worker pool beyond a few pixels), and
    noise drawn for at most INLINE_MAX_WORK parameter values (the chapter's Gaussian at /sample's largest n).
Anything else (large photos, JPEGs to resize, JSON arrays, many output images) goes to the image thread
(`Workers.run_images`), where Pillow's decoders and resizing release the GIL for large images. So does parsing
a large JSON body: pydantic holds the GIL while it parses, but on one thread the event loop gets the GIL back
between bodies instead of waiting for all of them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from service.images import png_size

T = TypeVar("T")

INLINE_MAX_BYTES = 8 * 1024  # encoded image bytes in a request decoded on the event loop
INLINE_MAX_IMAGES = 8  # and at most this many images (decoded inputs or PNG outputs)
INLINE_MAX_VALUES = 8 * 1024  # and at most this many values in all, for output images encoded to PNG
INLINE_MAX_WORK = 1 << 18  # element operations of numerical work (a likelihood's mean) done on the event loop


def small_inputs(payloads: list[Any], model_pixels: int) -> bool:
    """True when decoding these inputs (image bytes or base64 text) is cheaper inline than in the pool."""
    if any(not isinstance(p, bytes | str) for p in payloads):
        return False  # JSON arrays: their sizes are known only once converted
    if len(payloads) <= INLINE_MAX_IMAGES and sum(len(p) for p in payloads) <= INLINE_MAX_BYTES:
        return True
    return all(isinstance(p, bytes) and len(p) <= INLINE_MAX_BYTES and model_size_png(p, model_pixels)
               for p in payloads)


def model_size_png(data: bytes, model_pixels: int) -> bool:
    size = png_size(data)
    return size is not None and size[0] * size[1] <= model_pixels


def small_work(operations: int) -> bool:
    """True when numerical work of this many element operations (well under a millisecond) is cheaper inline."""
    return operations <= INLINE_MAX_WORK


def small_outputs(count: int, values: int) -> bool:
    """True when encoding these output images to PNG is cheaper inline than on the image thread."""
    return count <= INLINE_MAX_IMAGES and values <= INLINE_MAX_VALUES


class Workers:
    """The service's threads for CPU work that does not fit inline: a pool for numerical work that releases
    the GIL (/loglik's estimate, two-level prior draws, unbatched sessions, loading), and `image_threads`
    for image conversion that does not (see `run_images`)."""

    def __init__(self, max_workers: int, image_threads: int = 1):
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vae-cpu")
        self.image_pool = ThreadPoolExecutor(max_workers=image_threads, thread_name_prefix="vae-images")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    async def run_images(self, large: bool, fn: Callable[..., T], *args: Any) -> T:
        """Image decoding or encoding: inline when small, else on the image thread(s). Converting many small
        images is per-file Python work under the GIL, so several threads only hand the GIL back and forth
        (one image thread served /sample?n=64 faster than the pool's eight: docs/performance.md)."""
        if not large:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.image_pool, functools.partial(fn, *args))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.image_pool.shutdown(wait=False, cancel_futures=True)
