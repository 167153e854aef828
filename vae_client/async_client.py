"""The asynchronous client: Client's methods as coroutines, over one httpx.AsyncClient (one connection pool).

    async with AsyncClient("http://localhost:8000") as vae:
        enc = await vae.encode("boot.png")
        images = await vae.decode(enc.mean)

It runs the same operations as Client (operations.py), so the same call sends the same requests and gives the
same result. The requests of a split call are sent one after another; run calls concurrently with
asyncio.gather (the service batches concurrent requests).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from numpy.typing import ArrayLike

from vae_client.calls import Call, Operation
from vae_client.config import DEFAULT_TIMEOUT, client_config
from vae_client.errors import NetworkError, VAEClientError
from vae_client.exchange import answered, failed
from vae_client.images import ImageInputs
from vae_client.limits import DEFAULT_MAX_REQUEST_BYTES
from vae_client.operations import Method, Operations
from vae_client.results import EncodeResult, Images, LogLikResult, ModelInfo, ModelList

T = TypeVar("T")


class AsyncClient:
    """The asynchronous client of the VAE service at `base_url`; the options and methods of Client."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT, retries: int = 3, backoff: float = 0.5,
                 backoff_cap: float = 30.0, max_retry_after: float = 120.0, max_images: int | None = None,
                 max_samples: int | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 headers: Mapping[str, str] | None = None):
        config = client_config(base_url, api_key, timeout, retries, backoff, backoff_cap, max_retry_after, headers)
        self.base_url, self.retry = config.base_url, config.retry
        self._operations = Operations(max_images, max_samples, max_request_bytes)
        self._http = httpx.AsyncClient(base_url=config.base_url, headers=config.headers, timeout=config.timeout)

    # --- life cycle ------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    # --- the service -----------------------------------------------------------------------------------------

    async def ready(self) -> bool:
        """Client.ready."""
        try:
            response = await self._http.get("/readyz")
        except httpx.RequestError:
            return False
        if response.status_code == 503:
            return False
        outcome = answered(Call("GET", "/readyz"), response)
        if outcome.error is not None:
            raise outcome.error
        return True

    async def wait_ready(self, timeout: float = 60.0, interval: float = 0.2) -> None:
        """Client.wait_ready."""
        deadline = time.monotonic() + timeout
        while not await self.ready():
            if time.monotonic() > deadline:
                raise NetworkError(f"{self.base_url} not ready within {timeout:g} s")
            await asyncio.sleep(interval)

    async def models(self) -> ModelList:
        """Client.models."""
        return await self._run(self._operations.models())

    async def model(self, name: str | None = None) -> ModelInfo:
        """Client.model."""
        return await self._run(self._operations.model(name))

    # --- inference -------------------------------------------------------------------------------------------

    async def encode(self, images: ImageInputs, *, model: str | None = None, samples: int = 0,
                     seed: int | None = None, resize: bool = True) -> EncodeResult:
        """Client.encode."""
        return await self._run(self._operations.encode(images, model, samples, seed, resize))

    async def decode(self, z: ArrayLike, *, model: str | None = None, noise: bool = False, seed: int | None = None
                     ) -> Images:
        """Client.decode."""
        return await self._run(self._operations.decode(z, model, noise, seed))

    async def sample(self, n: int = 16, *, model: str | None = None, seed: int | None = None,
                     temperature: float = 1.0, noise: bool = False) -> Images:
        """Client.sample."""
        return await self._run(self._operations.sample(n, model, seed, temperature, noise))

    async def reconstruct(self, images: ImageInputs, *, model: str | None = None, resize: bool = True) -> Images:
        """Client.reconstruct."""
        return await self._run(self._operations.reconstruct(images, model, resize))

    async def loglik(self, images: ImageInputs, *, model: str | None = None, k: int | None = 1000,
                     seed: int | None = None, resize: bool = True) -> LogLikResult:
        """Client.loglik."""
        return await self._run(self._operations.loglik(images, model, k, seed, resize))

    async def resynthesize(self, images: ImageInputs, *, from_: str | None = None, to: str | None = None,
                           direction: str | None = None, strength: float = 1.0, model: str | None = None,
                           resize: bool = True) -> Images:
        """Client.resynthesize."""
        return await self._run(self._operations.resynthesize(images, model, from_, to, direction, strength, resize))

    async def interpolate(self, images: ImageInputs | None = None, *, z: ArrayLike | None = None, steps: int = 8,
                          method: Method = "linear", model: str | None = None, resize: bool = True) -> Images:
        """Client.interpolate."""
        return await self._run(self._operations.interpolate(images, z, model, steps, method, resize))

    # --- sending ---------------------------------------------------------------------------------------------

    async def _run(self, operation: Operation[T]) -> T:
        """Client._run, awaiting each request."""
        try:
            call = next(operation)
            while True:
                try:
                    answer = await self._send(call)
                except VAEClientError as exc:
                    call = operation.throw(exc)
                else:
                    call = operation.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result

    async def _send(self, call: Call) -> Any:
        """Client._send, awaiting the request and the wait."""
        for attempt in itertools.count():
            try:
                outcome = answered(call, await self._http.request(**call.request_args()))
            except httpx.RequestError as exc:
                outcome = failed(call, exc)
            if outcome.error is None:
                return outcome.value
            wait = self.retry.delay(attempt, outcome.error.retry_after) if outcome.retry else None
            if wait is None:
                raise outcome.error
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"
