"""The Open Inference Protocol v2 (the KServe, Triton and MLServer REST API): a second thin surface over the core.

For each VAE model M it serves three protocol models, named M.<role>:
  M.encoder  x FP32 [-1, C, H, W], values in the model's range -> mu, logvar FP32 [-1, D]
             (two-level models also mu2, logvar2 [-1, D2]: the manifest's encoder outputs)
  M.decoder  z FP32 [-1, D] -> the decoder graph's outputs, the likelihood's parameters: mean FP32 [-1, C, H, W]
             for the chapter's Gaussian (LikelihoodSpec lists the others)
  M.loglik   x FP32 [-1, C, H, W] -> log_likelihood, elbo, effective_sample_size, log_likelihood_stderr FP64 [-1];
             request parameters k and seed (validated by the same model as /loglik's query), the seed used
             returned in the response's parameters
Each runs the same use case, and so the same dynamic batcher, as /encode, /decode and /loglik: for the same
input the answers are the same numbers. Every service limit applies. Errors follow the protocol:
{"error": "message"} with a 4xx status (503 while models load).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core import Core
from service.deps import CoreDep
from service.errors import (
    Forbidden,
    InvalidInput,
    MalformedInput,
    NotFound,
    Overloaded,
    RateLimited,
    ServiceError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from service.manifest import likelihood_outputs
from service.model import ServedModel
from service.options import LogLikelihoodOptions
from service.v2_tensors import HEADER_LENGTH, InferRequest, InferResponse, OutputTensor, read_request, write_response

PREFIX = "/v2"
STATUS: dict[type[ServiceError], int] = {InvalidInput: 400, MalformedInput: 400, TooLarge: 413,
                                          UnsupportedMedia: 415, NotFound: 404, Unavailable: 503,
                                          Overloaded: 503, Unauthorized: 401, Forbidden: 403, RateLimited: 429}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = []


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class V2Error(BaseModel):
    error: str


Outputs = dict[str, np.ndarray]
Infer = Callable[..., Awaitable[tuple[Outputs, dict[str, Any]]]]


@dataclass(frozen=True)
class Role:
    """One protocol model of a VAE model: its tensors, and the use case it runs."""

    inputs: Callable[[ServedModel], list[TensorMetadata]]
    outputs: Callable[[ServedModel], list[TensorMetadata]]
    infer: Infer


def images_tensor(model: ServedModel) -> list[TensorMetadata]:
    return [TensorMetadata(name=model.encoder.input, datatype="FP32", shape=[-1, *model.manifest.image.shape])]


async def encode(core: Core, model: ServedModel, inputs: dict[str, np.ndarray], parameters: dict[str, Any],
                 options: type[LogLikelihoodOptions]) -> tuple[Outputs, dict[str, Any]]:
    result = await core.encode(model, core.image_tensor(model, inputs[model.encoder.input], model.encoder.input))
    arrays = [a for q in result.levels for a in (q.mean, q.logvar)]
    return dict(zip(model.encoder.outputs, arrays, strict=True)), {}


async def decode(core: Core, model: ServedModel, inputs: dict[str, np.ndarray], parameters: dict[str, Any],
                 options: type[LogLikelihoodOptions]) -> tuple[Outputs, dict[str, Any]]:
    z, field = inputs[model.decoder.input], model.decoder.input
    if z.ndim != 2:  # core.latents reads rows of numbers: a tensor of another rank has none
        raise InvalidInput(field, f"has shape {list(z.shape)}, the model takes [N, {model.latent_dim}]",
                           [-1, model.latent_dim])
    z = core.latents(model, z, field)
    params = (await core.decode(model, z)).parameters  # the decoder graph's outputs: the likelihood's parameters
    assert params is not None  # decode always gives them
    return dict(zip(model.decoder.outputs, params, strict=True)), {}


async def loglik(core: Core, model: ServedModel, inputs: dict[str, np.ndarray], parameters: dict[str, Any],
                 options: type[LogLikelihoodOptions]) -> tuple[Outputs, dict[str, Any]]:
    try:
        o = options.model_validate_json(to_json(parameters), strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "parameters" + "".join(f".{p}" for p in first["loc"])
        raise InvalidInput(field, first["msg"], (first.get("ctx") or {}).get("le")) from exc
    x = core.image_tensor(model, inputs[model.encoder.input], model.encoder.input)
    scores = await core.log_likelihood(model, x, o.k, o.seed)
    e = scores.estimate
    return ({"log_likelihood": e.log_likelihood, "elbo": e.elbo, "effective_sample_size": e.effective_sample_size,
             "log_likelihood_stderr": e.stderr},
            {"k": e.k, "seed": scores.seed})


LOGLIK_OUTPUTS = ("log_likelihood", "elbo", "effective_sample_size", "log_likelihood_stderr")

ROLES = {
    "encoder": Role(images_tensor, lambda m: [TensorMetadata(name=name, datatype="FP32", shape=list(shape))
                                              for name, shape in latent_shapes(m)], encode),
    "decoder": Role(lambda m: [TensorMetadata(name=m.decoder.input, datatype="FP32", shape=[-1, m.latent_dim])],
                    lambda m: [TensorMetadata(name=name, datatype="FP32", shape=[-1, *shape[1:]])
                               for name, shape in likelihood_outputs(m.manifest.likelihood, m.manifest.image)],
                    decode),
    "loglik": Role(images_tensor, lambda m: [TensorMetadata(name=name, datatype="FP64", shape=[-1]) for name in
                                             LOGLIK_OUTPUTS], loglik),
}


def latent_shapes(model: ServedModel) -> list[tuple[str, list[int]]]:
    """The encoder's outputs with their shapes, -1 for the batch axis: (mu, [-1, D1]), (logvar, [-1, D1]), ..."""
    dims = [d for d in model.latent_dims for _ in range(2)]
    return [(name, [-1, d]) for name, d in zip(model.encoder.outputs, dims, strict=True)]


def find(core: Core, name: str) -> tuple[ServedModel, Role]:
    """M.<role> -> the VAE model M and the role (M itself may contain dots)."""
    base, _, role = name.rpartition(".")
    registry = core.ready()
    if role not in ROLES or base not in registry.models:
        raise NotFound("name", f"unknown model {name!r}; this server has "
                       f"{', '.join(f'{m}.{r}' for m in sorted(registry.models) for r in ROLES)}")
    return registry.models[base], ROLES[role]


def inlined_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its $defs written where they are used: inside an OpenAPI document a
    "#/$defs/..." reference is looked up at the document's root, which has none (these models are not recursive)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return inline({**defs[ref.removeprefix("#/$defs/")], **rest})
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return dict(inline(schema))


async def get_loglik_options(request: Request) -> type[LogLikelihoodOptions]:
    options: type[LogLikelihoodOptions] = request.app.state.api.loglik_options
    return options


LogLikOptionsDep = Annotated[type[LogLikelihoodOptions], Depends(get_loglik_options)]
ModelName = Annotated[str, Path(description="a protocol model: M.encoder, M.decoder or M.loglik of a VAE model M",
                                examples=["fashion-mnist.decoder"])]  # the shipped default model; fits the example body
Version = Annotated[str, Path(description="the model's version: each protocol model has one, 1", examples=["1"])]
ERRORS: dict[int | str, dict[str, Any]] = {"4XX": {"model": V2Error, "description": "a request the server cannot "
                                                   "serve: {\"error\": message}"},
                                           503: {"model": V2Error, "description": "models still loading, "
                                                 "shutting down, or a bound on work reached (Retry-After)"}}
router = APIRouter(prefix=PREFIX, tags=["Open Inference Protocol v2"])


@router.get("")
async def server_metadata() -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name="vae-service", version=package_version(), extensions=["binary_tensor_data",
                                                                                     "parameters"])


@router.get("/health/live")
async def live() -> Live:
    """The process answers."""
    return Live(live=True)


@router.get("/health/ready", responses=ERRORS)
async def ready(core: CoreDep) -> ServerReady:
    """Every model is loaded (503 before, and from SIGTERM on)."""
    core.ready_to_serve()
    return ServerReady(ready=True)


@router.get("/models/{name}", responses=ERRORS)
async def model_metadata(name: ModelName, core: CoreDep) -> ModelMetadata:
    """A protocol model's input and output tensors: names, datatypes, shapes (-1: the batch axis)."""
    model, role = find(core, name)
    return ModelMetadata(name=name, versions=["1"], platform="onnxruntime_onnx", inputs=role.inputs(model),
                         outputs=role.outputs(model))


@router.get("/models/{name}/ready", responses=ERRORS)
async def model_ready(name: ModelName, core: CoreDep) -> ModelReady:
    """The protocol model can serve (404 for an unknown one, 503 while loading)."""
    find(core, name)
    return ModelReady(name=name, ready=True)


INFER_RESPONSES = ERRORS | {200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                     "format": "binary"}}}}}
INFER_REQUEST = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inlined_schema(InferRequest)},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "description": f"the JSON request, {HEADER_LENGTH} bytes long, then the "
                                            "binary inputs"}}}}}


@router.post("/models/{name}/infer", response_model=InferResponse, responses=INFER_RESPONSES,
             openapi_extra=INFER_REQUEST)
async def infer(name: ModelName, request: Request, core: CoreDep, options: LogLikOptionsDep) -> Response:
    """Run a protocol model on JSON tensors, or on tensors sent with the binary tensor data extension."""
    model, role = find(core, name)
    raw = await request.body()  # a large one is parsed on the image thread, as the VAE API's (vae_requests.py)
    message, tensors = await core.workers.run_images(len(raw) > core.settings.json_inline_bytes, read_request, raw,
                                                     request.headers.get(HEADER_LENGTH))
    if message.model_name not in (None, name):
        raise InvalidInput("model_name", f"is {message.model_name!r}, but the URL names the model {name!r}", name)
    inputs = matched_inputs(role.inputs(model), tensors)
    arrays, parameters = await role.infer(core, model, inputs, message.parameters or {}, options)
    return respond(name, message, role.outputs(model), arrays, parameters)


@router.get("/models/{name}/versions/{version}", responses=ERRORS)
async def versioned_model_metadata(name: ModelName, version: Version, core: CoreDep) -> ModelMetadata:
    """The same as /v2/models/{name}, for version 1 (what clients asking for a version call)."""
    check_version(version)
    return await model_metadata(name, core)


@router.get("/models/{name}/versions/{version}/ready", responses=ERRORS)
async def versioned_model_ready(name: ModelName, version: Version, core: CoreDep) -> ModelReady:
    """The same as /v2/models/{name}/ready, for version 1."""
    check_version(version)
    return await model_ready(name, core)


@router.post("/models/{name}/versions/{version}/infer", response_model=InferResponse, responses=INFER_RESPONSES,
             openapi_extra=INFER_REQUEST)
async def versioned_infer(name: ModelName, version: Version, request: Request, core: CoreDep,
                          options: LogLikOptionsDep) -> Response:
    """The same as /v2/models/{name}/infer, for version 1."""
    check_version(version)
    return await infer(name, request, core, options)


def check_version(version: str) -> None:
    if version != "1":
        raise NotFound("version", f"unknown version {version!r}: each model has one version, 1")


def matched_inputs(expected: list[TensorMetadata], tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The request's tensors, which must be exactly the model's inputs, each of its datatype."""
    names = [t.name for t in expected]
    if sorted(tensors) != sorted(names):
        raise InvalidInput("inputs", f"this model takes the inputs {names}, got {sorted(tensors)}", names)
    return tensors  # each of datatype FP32 (read_request)


def respond(name: str, message: InferRequest, outputs: list[TensorMetadata], arrays: Outputs,
            parameters: dict[str, Any]) -> Response:
    """The requested outputs (all by default), JSON or binary as asked, with the request's id echoed."""
    datatypes = {t.name: t.datatype for t in outputs}
    wanted = message.outputs or []
    names = [o.name for o in wanted] or [t.name for t in outputs]
    unknown = [n for n in names if n not in datatypes]
    if unknown:
        raise InvalidInput("outputs", f"unknown outputs {unknown}; this model has {list(datatypes)}", list(datatypes))
    default = flag(message.parameters, "binary_data_output", False, "parameters")
    binary = [flag(o.parameters, "binary_data", default, f"outputs[{i}].parameters") for i, o in enumerate(wanted)
              ] or [default] * len(names)
    response = InferResponse(model_name=name, model_version="1", id=message.id, parameters=parameters or None,
                             outputs=[OutputTensor(name=n, shape=list(arrays[n].shape), datatype=datatypes[n])
                                      for n in names])
    body, header_length = write_response(response, [arrays[n] for n in names], binary)
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})


def flag(parameters: dict[str, Any] | None, key: str, default: bool, where: str) -> bool:
    """A boolean parameter (binary_data, binary_data_output): true or false, nothing that merely looks like one."""
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}.{key}", f"must be true or false, got {value!r}", [True, False])
    return value


def package_version() -> str:
    try:
        return version("vae-service")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
        return "unknown"


# --- errors, in the protocol's shape --------------------------------------------------------------------------


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(to_json({"error": message}), status_code=status, media_type="application/json",
                    headers=headers)


def service_error(exc: ServiceError) -> Response:
    """The message, prefixed by the input or parameter at fault."""
    about_input = isinstance(exc, InvalidInput | MalformedInput | TooLarge | UnsupportedMedia) and exc.field
    return error_response(STATUS[type(exc)], f"{exc.field}: {exc.message}" if about_input else exc.message,
                          exc.headers or None)


def validation_error(exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    return error_response(400, f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}")


def http_error(exc: StarletteHTTPException) -> Response:
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def is_v2(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")
