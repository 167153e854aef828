"""The asynchronous client against the real service: every method gives what the synchronous client gives (which
test_client.py checks against the raw HTTP answers), splitting included, and raises the same errors."""

import asyncio

import numpy as np
import pytest

from tests.client.conftest import API_KEY, DIGITS, EXAMPLE, MAX_IMAGES, MAX_K, MAX_SAMPLES, TROUSER, TWO_LEVEL, Server
from vae_client import AsyncClient, AuthenticationError, Client, InvalidInputError, NotFoundError


def digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images[:n] / 16.0


def test_every_method_matches_the_sync_client(server: Server):
    x = digits(2 * MAX_IMAGES + 1)  # split into three requests

    async def calls(vae: AsyncClient) -> dict:
        out = {"ready": await vae.ready(), "models": await vae.models(), "model": await vae.model(DIGITS),
               "default": await vae.model(), "encode": await vae.encode(EXAMPLE, samples=2, seed=1),
               "encode_split": await vae.encode(x, model=DIGITS, samples=1, seed=2),
               "levels": await vae.encode(x[:2], model=TWO_LEVEL),
               "sample": await vae.sample(2 * MAX_SAMPLES + 1, model=DIGITS, seed=4, temperature=0.7, noise=True),
               "reconstruct": await vae.reconstruct(x, model=DIGITS),
               "loglik": await vae.loglik([EXAMPLE, TROUSER], k=100, seed=9),
               "loglik_split": await vae.loglik(x, model=DIGITS, k=50, seed=1),
               "resynthesize": await vae.resynthesize(x, model=DIGITS, from_="1", to="7", strength=0.3),
               "interpolate": await vae.interpolate([EXAMPLE, TROUSER], steps=5, method="slerp")}
        out["decode"] = await vae.decode(out["encode_split"].mean, model=DIGITS, noise=True, seed=6)
        out["interpolate_z"] = await vae.interpolate(z=out["encode"].samples[0], steps=3)
        return out

    async def main() -> dict:
        async with AsyncClient(server.url, api_key=API_KEY) as vae:
            return await calls(vae)

    got = asyncio.run(main())
    with Client(server.url, api_key=API_KEY) as vae:
        want = {"ready": vae.ready(), "models": vae.models(), "model": vae.model(DIGITS), "default": vae.model(),
                "encode": vae.encode(EXAMPLE, samples=2, seed=1),
                "encode_split": vae.encode(x, model=DIGITS, samples=1, seed=2),
                "levels": vae.encode(x[:2], model=TWO_LEVEL),
                "sample": vae.sample(2 * MAX_SAMPLES + 1, model=DIGITS, seed=4, temperature=0.7, noise=True),
                "reconstruct": vae.reconstruct(x, model=DIGITS),
                "loglik": vae.loglik([EXAMPLE, TROUSER], k=100, seed=9),
                "loglik_split": vae.loglik(x, model=DIGITS, k=50, seed=1),
                "resynthesize": vae.resynthesize(x, model=DIGITS, from_="1", to="7", strength=0.3),
                "interpolate": vae.interpolate([EXAMPLE, TROUSER], steps=5, method="slerp")}
        want["decode"] = vae.decode(want["encode_split"].mean, model=DIGITS, noise=True, seed=6)
        want["interpolate_z"] = vae.interpolate(z=want["encode"].samples[0], steps=3)

    assert got["ready"] is True and got["models"] == want["models"]
    assert got["model"] == want["model"] and got["default"].name == "fashion-mnist"
    for name in ("encode", "encode_split"):
        assert got[name].mean.shape[0] in (1, 2 * MAX_IMAGES + 1)
        assert np.array_equal(got[name].mean, want[name].mean) and np.array_equal(got[name].samples,
                                                                                   want[name].samples), name
    assert [lv.name for lv in got["levels"].levels] == ["z1", "z2"]
    assert all(np.array_equal(a.mean, b.mean) for a, b in zip(got["levels"].levels, want["levels"].levels,
                                                              strict=True))
    for name in ("sample", "reconstruct", "resynthesize", "interpolate", "decode", "interpolate_z"):
        assert got[name].png == want[name].png and np.array_equal(got[name].arrays, want[name].arrays), name
        assert got[name].seed == want[name].seed, name
    assert len(got["sample"]) == 2 * MAX_SAMPLES + 1 and got["sample"].seed == 4
    assert got["resynthesize"].z is not None and np.array_equal(got["resynthesize"].z, want["resynthesize"].z)
    for name in ("loglik", "loglik_split"):
        assert got[name].log_likelihood.tolist() == want[name].log_likelihood.tolist(), name
        assert got[name].stderr.tolist() == want[name].stderr.tolist(), name
        assert got[name].effective_sample_size.tolist() == want[name].effective_sample_size.tolist(), name


def test_errors_are_raised_as_by_the_sync_client(server: Server):
    async def main() -> None:
        async with AsyncClient(server.url, api_key=API_KEY, retries=0) as vae:
            with pytest.raises(InvalidInputError) as bad_k:
                await vae.loglik(EXAMPLE, k=MAX_K + 1)
            assert (bad_k.value.status, bad_k.value.field, bad_k.value.limit) == (422, "query.k", MAX_K)
            with pytest.raises(NotFoundError) as unknown:
                await vae.encode(EXAMPLE, model="nope")
            assert unknown.value.status == 404 and unknown.value.field == "query.model"
            with pytest.raises(InvalidInputError) as broken:
                await vae.reconstruct([EXAMPLE] * MAX_IMAGES + [b"not an image"])
            assert broken.value.field == f"images[{MAX_IMAGES}]"
        async with AsyncClient(server.url, retries=0) as anonymous:
            assert await anonymous.ready()
            with pytest.raises(AuthenticationError):
                await anonymous.sample(1)

    asyncio.run(main())


def test_concurrent_calls_on_one_client(server: Server):
    """One connection pool serves calls gathered at once; each gets its own answer."""
    async def main() -> list:
        async with AsyncClient(server.url, api_key=API_KEY) as vae:
            return await asyncio.gather(*[vae.sample(2, model=DIGITS, seed=s) for s in range(6)])

    results = asyncio.run(main())
    with Client(server.url, api_key=API_KEY) as vae:
        assert [r.png for r in results] == [vae.sample(2, model=DIGITS, seed=s).png for s in range(6)]
    assert [r.seed for r in results] == list(range(6))
