"""A Python client of the VAE service (docs/client.md): `Client` and `AsyncClient`, over httpx and numpy.

    from vae_client import Client
    with Client("http://localhost:8000") as vae:
        enc = vae.encode("boot.png")
        print(enc.mean.shape, vae.loglik("boot.png", k=1000, seed=0).log_likelihood)
"""

from vae_client.async_client import AsyncClient
from vae_client.client import Client
from vae_client.errors import (
    AuthenticationError,
    BadRequestError,
    InvalidInputError,
    NetworkError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
    UnexpectedResponseError,
    UnsupportedMediaTypeError,
    VAEClientError,
)
from vae_client.images import ImageInput, ImageInputs
from vae_client.results import EncodeResult, Images, Level, LogLikResult, ModelInfo, ModelList
from vae_client.retry import RetryPolicy

__all__ = [
    "AsyncClient", "AuthenticationError", "BadRequestError", "Client", "EncodeResult", "ImageInput", "ImageInputs",
    "Images", "InvalidInputError", "Level", "LogLikResult", "ModelInfo", "ModelList", "NetworkError", "NotFoundError",
    "PayloadTooLargeError", "PermissionDeniedError", "RateLimitError", "RequestTimeoutError", "RetryPolicy",
    "ServerError", "ServiceUnavailableError", "UnexpectedResponseError", "UnsupportedMediaTypeError",
    "VAEClientError",
]
