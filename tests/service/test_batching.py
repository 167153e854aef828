"""Dynamic batching: concurrent calls share one run, each gets exactly its own rows back, in order."""

import asyncio

import numpy as np
import pytest

from service.batching import Batcher
from service.metrics import Metrics


def _batcher(run, max_rows=64, max_delay=0.01):
    return Batcher(run, max_rows, max_delay, Metrics(), "m", "g")


def test_concurrent_calls_are_gathered_and_split_back():
    calls = []

    def run(rows):  # a real computation with two outputs, recording each batch's size
        calls.append(len(rows))
        return [rows * 2.0, rows.sum(axis=1, keepdims=True)]

    async def main():
        batcher = _batcher(run)
        inputs = [np.full((1 + i % 3, 4), float(i)) for i in range(20)]
        outs = await asyncio.gather(*(batcher(x) for x in inputs))
        return inputs, outs

    inputs, outs = asyncio.run(main())
    for x, (doubled, sums) in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(doubled, x * 2.0)
        np.testing.assert_array_equal(sums, x.sum(axis=1, keepdims=True))
    assert sum(calls) == sum(len(x) for x in inputs)
    assert len(calls) < 20  # gathered: fewer runs than requests


def test_batches_respect_max_rows():
    calls = []

    def run(rows):
        calls.append(len(rows))
        return [rows]

    async def main():
        batcher = _batcher(run, max_rows=8)
        await asyncio.gather(*(batcher(np.zeros((3, 2))) for _ in range(10)))

    asyncio.run(main())
    assert max(calls) <= 8 + 2  # a batch closes at the first request that reaches the limit
    assert sum(calls) == 30


def test_a_failing_run_fails_only_its_own_batch():
    def run(rows):
        if np.any(rows < 0):
            raise RuntimeError("session failed")
        return [rows + 1]

    async def main():
        batcher = _batcher(run, max_delay=0.0)
        bad = await asyncio.gather(batcher(-np.ones((1, 2))), return_exceptions=True)
        good = await batcher(np.ones((1, 2)))
        return bad, good

    bad, good = asyncio.run(main())
    assert isinstance(bad[0], RuntimeError)
    np.testing.assert_array_equal(good[0], np.full((1, 2), 2.0))


def test_batched_and_unbatched_service_give_the_same_answers(model_dir):
    """The same requests, fired concurrently, through an app with batching and one without."""
    import concurrent.futures

    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.conftest import make_settings, wait_ready

    rng = np.random.default_rng(0)
    arrays = [rng.uniform(size=(28, 28)).round(4).tolist() for _ in range(12)]
    answers = {}
    for batching in (True, False):
        with TestClient(create_app(make_settings(model_dir, batching=batching, batch_max_delay_ms=20))) as c:
            wait_ready(c)

            def encode(a, c=c):
                return c.post("/encode", json={"arrays": [a]}).json()["results"][0]["mean"]

            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                answers[batching] = list(pool.map(encode, arrays))
            metrics = c.get("/metrics").text
            if batching:
                count = _metric(metrics, 'vae_batch_rows_count{graph="encoder",model="fashion-mnist"}')
                total = _metric(metrics, 'vae_batch_rows_sum{graph="encoder",model="fashion-mnist"}')
                assert total == 12 and count < 12  # some requests shared a run
                assert "vae_batch_queue_seconds_bucket" in metrics
    np.testing.assert_allclose(answers[True], answers[False], atol=1e-5)


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name))
    return float(line.split()[-1])


@pytest.mark.parametrize("rows", [1, 5])
def test_single_call_passes_through(rows):
    async def main():
        return await _batcher(lambda r: [r * 3], max_delay=0.0)(np.ones((rows, 2)))

    np.testing.assert_array_equal(asyncio.run(main())[0], np.full((rows, 2), 3.0))


def test_with_no_delay_waiting_calls_still_share_a_run():
    """max_delay = 0: no waiting for company, but calls queued while a run is busy join the next one."""
    import threading

    calls = []
    gate = threading.Event()

    def run(rows):
        if not calls:
            gate.wait(1.0)  # the first run is slow: the others queue up behind it
        calls.append(len(rows))
        return [rows]

    async def main():
        batcher = _batcher(run, max_delay=0.0)
        first = asyncio.ensure_future(batcher(np.zeros((1, 2))))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher(np.zeros((1, 2)))) for _ in range(5)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert calls == [1, 5]


def test_rows_that_cannot_be_joined_fail_their_batch_and_the_batcher_serves_on():
    """Requests of one graph always share a row shape; if two did not, their batch gets the error and the
    next batch still runs (the batch thread survives)."""
    def run(rows):
        return [rows * 2.0]

    async def main():
        batcher = _batcher(run, max_delay=0.01)
        mixed = await asyncio.wait_for(asyncio.gather(batcher(np.ones((1, 2))), batcher(np.ones((1, 3))),
                                                      return_exceptions=True), 10)  # not a hang
        after = await asyncio.wait_for(batcher(np.ones((1, 2))), 10)
        return mixed, after

    mixed, after = asyncio.run(main())
    assert all(isinstance(r, ValueError) for r in mixed)
    np.testing.assert_array_equal(after[0], np.full((1, 2), 2.0))


def _slow_first_run(calls, gate):
    """A run whose first call waits for `gate`: the requests that come meanwhile queue up behind it."""
    def run(rows):
        if not calls:
            gate.wait(2.0)
        calls.append(len(rows))
        return [rows + 1]
    return run


def test_a_full_queue_refuses_at_once_with_retry_after():
    import threading

    from service.errors import Overloaded

    calls, gate = [], threading.Event()

    metrics = Metrics()

    async def main():
        batcher = Batcher(_slow_first_run(calls, gate), 64, 0.0, metrics, "m", "g", max_queued_rows=6,
                          retry_after_s=3)
        first = asyncio.ensure_future(batcher(np.zeros((1, 2))))
        await asyncio.sleep(0.05)  # running: the next ones wait
        queued = [asyncio.ensure_future(batcher(np.zeros((3, 2)))) for _ in range(2)]  # 6 rows wait
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await batcher(np.zeros((1, 2)))  # a 7th row would pass the bound
        gate.set()
        done = await asyncio.gather(first, *queued)
        return refused.value, done, metrics.registry.get_sample_value("vae_rejected_total", {"reason": "queue_full"})

    refused, done, rejected = asyncio.run(main())
    assert refused.headers == {"Retry-After": "3"} and refused.limit == 6
    assert [len(d[0]) for d in done] == [1, 3, 3] and calls == [1, 6]
    assert rejected == 1


def test_a_cancelled_request_is_dropped_from_the_queue():
    """Its client went away while it waited: its rows never run, the others get theirs."""
    import threading

    calls, gate = [], threading.Event()

    async def main():
        batcher = _batcher(_slow_first_run(calls, gate), max_delay=0.0)
        first = asyncio.ensure_future(batcher(np.zeros((1, 2))))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher(np.zeros((5, 2))))
        kept = asyncio.ensure_future(batcher(np.full((2, 2), 7.0)))
        await asyncio.sleep(0)
        gone.cancel()
        gate.set()
        return await asyncio.gather(first, kept)

    _, kept = asyncio.run(main())
    assert calls == [1, 2]  # the cancelled request's 5 rows were not run
    np.testing.assert_array_equal(kept[0], np.full((2, 2), 8.0))


def test_a_closed_batcher_finishes_its_queue_then_runs_calls_unbatched():
    """A reload replaced the model: requests that hold it still get answers, none hangs."""
    import threading

    calls, gate = [], threading.Event()

    async def main():
        batcher = _batcher(_slow_first_run(calls, gate), max_delay=0.0)
        first = asyncio.ensure_future(batcher(np.zeros((1, 2))))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher(np.zeros((2, 2))))
        await asyncio.sleep(0)
        batcher.close()
        gate.set()
        before = await asyncio.wait_for(asyncio.gather(first, queued), 5)
        thread_stopped = batcher.thread is None
        after = await asyncio.wait_for(batcher(np.full((3, 2), 1.0)), 5)
        return before, thread_stopped, after

    before, thread_stopped, after = asyncio.run(main())
    assert [len(b[0]) for b in before] == [1, 2] and thread_stopped
    np.testing.assert_array_equal(after[0], np.full((3, 2), 2.0))
    assert calls == [1, 2, 3]
