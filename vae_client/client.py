"""The synchronous client: one httpx.Client (one connection pool) per Client.

    with Client("http://localhost:8000") as vae:
        enc = vae.encode("boot.png")           # EncodeResult: .mean, .logvar [N, D]
        images = vae.decode(enc.mean)          # Images: .arrays [N, C, H, W], .to_pil(), .save(dir)
        scores = vae.loglik("boot.png", k=1000, seed=0)

Every method that uses a model takes `model=None` (the service's default model). Calls with more items than
the service takes per request are split and their answers joined in order (chunks.py, limits.py); failures
raise VAEClientError subclasses (errors.py), after the retries for connection errors, 429 and 503 (retry.py).
"""

from __future__ import annotations

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


class Client:
    """A client of the VAE service at `base_url`.

    `api_key`: sent as `Authorization: Bearer <key>` (when the service has VAE_API_KEYS_FILE set).
    `timeout`: seconds (or an httpx.Timeout) to connect and between bytes of an answer; None waits forever.
    `retries`: attempts after the first for connection errors, 429 and 503, waiting with capped exponential
    backoff and jitter (`backoff` base, `backoff_cap`) and at least the answer's Retry-After (up to
    `max_retry_after`). `max_images`, `max_samples`: per-request limits to split calls by, instead of those the
    service publishes; `max_request_bytes`: its body limit (VAE_MAX_REQUEST_BYTES, default 16 MiB).
    `headers`: sent with every request.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT, retries: int = 3, backoff: float = 0.5,
                 backoff_cap: float = 30.0, max_retry_after: float = 120.0, max_images: int | None = None,
                 max_samples: int | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 headers: Mapping[str, str] | None = None):
        config = client_config(base_url, api_key, timeout, retries, backoff, backoff_cap, max_retry_after, headers)
        self.base_url, self.retry = config.base_url, config.retry
        self._operations = Operations(max_images, max_samples, max_request_bytes)
        self._http = httpx.Client(base_url=config.base_url, headers=config.headers, timeout=config.timeout)

    # --- life cycle ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # --- the service -----------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether the service is up with its models loaded (`GET /readyz` is 200); False while it loads, shuts
        down or cannot be reached. One request, not retried."""
        try:
            response = self._http.get("/readyz")
        except httpx.RequestError:
            return False
        if response.status_code == 503:
            return False
        outcome = answered(Call("GET", "/readyz"), response)
        if outcome.error is not None:
            raise outcome.error
        return True

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.2) -> None:
        """Polls `ready()` until it is True; NetworkError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise NetworkError(f"{self.base_url} not ready within {timeout:g} s")
            time.sleep(interval)

    def models(self) -> ModelList:
        """Every loaded model (`GET /models`): names, manifests, providers, the default, folders skipped."""
        return self._run(self._operations.models())

    def model(self, name: str | None = None) -> ModelInfo:
        """One model (`GET /models/{name}`); None: the default model. NotFoundError for an unknown name."""
        return self._run(self._operations.model(name))

    # --- inference -------------------------------------------------------------------------------------------

    def encode(self, images: ImageInputs, *, model: str | None = None, samples: int = 0, seed: int | None = None,
               resize: bool = True) -> EncodeResult:
        """The posterior q(z|x) of each image (`POST /encode`): `.mean`, `.logvar` [N, D] float32; with
        `samples` > 0, `.samples` [N, S, D] drawn with `seed`; `.levels` for two-level models."""
        return self._run(self._operations.encode(images, model, samples, seed, resize))

    def decode(self, z: ArrayLike, *, model: str | None = None, noise: bool = False, seed: int | None = None
               ) -> Images:
        """Images f[z] from latent vectors [N, D] (or one, [D]) (`POST /decode`); with `noise`, x ~ Pr(x|z)
        drawn with `seed`."""
        return self._run(self._operations.decode(z, model, noise, seed))

    def sample(self, n: int = 16, *, model: str | None = None, seed: int | None = None, temperature: float = 1.0,
               noise: bool = False) -> Images:
        """`n` images from the prior (`GET /sample`), its noise scaled by `temperature`; with `noise`,
        x ~ Pr(x|z). The same seed gives the same images."""
        return self._run(self._operations.sample(n, model, seed, temperature, noise))

    def reconstruct(self, images: ImageInputs, *, model: str | None = None, resize: bool = True) -> Images:
        """The decoded posterior means f[mu(x)] of the images (`POST /reconstruct`)."""
        return self._run(self._operations.reconstruct(images, model, resize))

    def loglik(self, images: ImageInputs, *, model: str | None = None, k: int | None = 1000,
               seed: int | None = None, resize: bool = True) -> LogLikResult:
        """Importance-sampled log Pr(x) of each image with `k` samples (`POST /loglik`; None: the service's
        VAE_DEFAULT_K): `.log_likelihood`, `.elbo`, `.bits_per_dim`, `.stderr`, `.effective_sample_size`."""
        return self._run(self._operations.loglik(images, model, k, seed, resize))

    def resynthesize(self, images: ImageInputs, *, from_: str | None = None, to: str | None = None,
                     direction: str | None = None, strength: float = 1.0, model: str | None = None,
                     resize: bool = True) -> Images:
        """The images moved along an attribute direction (`POST /resynthesize`): decode mu(x) + strength *
        (mean_to - mean_from), attributes `from_` and `to`, or a named `direction`. `.z`: the codes decoded."""
        return self._run(self._operations.resynthesize(images, model, from_, to, direction, strength, resize))

    def interpolate(self, images: ImageInputs | None = None, *, z: ArrayLike | None = None, steps: int = 8,
                    method: Method = "linear", model: str | None = None, resize: bool = True) -> Images:
        """`steps` images on the path between two images' posterior means, or two latent vectors `z` [2, D]
        (`POST /interpolate`), straight (`linear`) or along the great circle (`slerp`). `.z`: the path."""
        return self._run(self._operations.interpolate(images, z, model, steps, method, resize))

    # --- sending ---------------------------------------------------------------------------------------------

    def _run(self, operation: Operation[T]) -> T:
        """Runs an operation: sends each request it yields, and gives it the answer or throws in the error."""
        try:
            call = next(operation)
            while True:
                try:
                    answer = self._send(call)
                except VAEClientError as exc:
                    call = operation.throw(exc)
                else:
                    call = operation.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result

    def _send(self, call: Call) -> Any:
        """One request, retried as the policy says; its JSON answer."""
        for attempt in itertools.count():
            try:
                outcome = answered(call, self._http.request(**call.request_args()))
            except httpx.RequestError as exc:
                outcome = failed(call, exc)
            if outcome.error is None:
                return outcome.value
            wait = self.retry.delay(attempt, outcome.error.retry_after) if outcome.retry else None
            if wait is None:
                raise outcome.error
            time.sleep(wait)
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

