"""Splitting one call into requests within the service's per-request limits, and the seed of each request.

Images go in consecutive runs: a run holds at most `max_items` items, at most `max_bytes` of body (an item
larger than that goes alone, and the service says whether it takes it), and items of one form only (files
or arrays: a request carries one form). Answers are joined back in order.

Seeds: where a call that uses randomness is split, the first request gets the call's seed and request i > 0
a seed derived from it (`derived_seed`), so no two requests draw the same numbers and the whole call is
reproduced by its seed; a call without a seed then gets a fresh one from the client, returned in its result.
`/loglik` is the exception: its draws do not depend on an image's place in a request, so every request gets
the call's seed and each image's numbers are those it gets alone.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

MAX_SEED = 2**53 - 1  # the service's largest seed (exact in any JSON client)


def plan(kinds: Sequence[str], sizes: Sequence[int], max_items: int, max_bytes: int) -> list[list[int]]:
    """Consecutive runs of item indices: one kind each, at most `max_items` items and `max_bytes` bytes."""
    runs: list[list[int]] = []
    used = 0
    for i, (kind, size) in enumerate(zip(kinds, sizes, strict=True)):
        run = runs[-1] if runs else None
        if run is None or kinds[run[0]] != kind or len(run) >= max_items or used + size > max_bytes:
            runs.append([i])
            used = size
        else:
            run.append(i)
            used += size
    return runs


def counts(n: int, max_n: int) -> list[int]:
    """n split into parts of at most max_n: [max_n, ..., rest]. n < 1 stays one part (the service refuses it)."""
    if n <= max_n:
        return [n]
    return [min(max_n, n - start) for start in range(0, n, max_n)]


def fresh_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def derived_seed(seed: int, index: int) -> int:
    """The seed of request `index` of a call with seed `seed`: the seed itself for the first request, else a
    hash of both (seed + i would reuse /sample's noise stream, which is seed + 1's)."""
    if index == 0:
        return seed
    digest = hashlib.blake2b(f"vae-client:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (MAX_SEED + 1)


def request_seeds(seed: int | None, requests: int, random: bool, shared: bool = False
                  ) -> tuple[int | None, list[int | None]]:
    """(the call's seed, each request's seed). `random`: whether the call draws numbers (if not, the call has no
    seed, as the service says of such answers, and each request passes the caller's on for the service to check);
    `shared`: every request takes the call's seed (/loglik). One request keeps the caller's seed, None included
    (the service then picks one and says which)."""
    if not random:
        return None, [seed] * requests
    if requests == 1:
        return seed, [seed]
    base = fresh_seed() if seed is None else seed
    return base, [base if shared else derived_seed(base, i) for i in range(requests)]
