"""The Open Inference Protocol's (KServe v2) inference messages and tensors, over REST.

A request is JSON: `inputs` (name, shape, datatype, data in row-major order, flat or nested), optional `outputs`
(which to return, each possibly with `parameters.binary_data`), `parameters` and an `id` echoed back (and
`model_name`, which KServe's client adds: the model the URL names). With the binary tensor data extension (what
Triton's client sends by default) the body is the JSON header, `Inference-Header-Content-Length` bytes long,
followed by the raw tensors of the inputs whose parameters give a `binary_data_size`, in order; outputs asked
for as binary (`binary_data` per output, or `binary_data_output` for all) follow the response's JSON header the
same way. Raw tensors are little-endian, row-major.

    request = read_request(body, header_length)       -> InferRequest, tensors by input name
    body, header_length = write_response(response, arrays, binary)
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import to_json

from service.errors import InvalidInput, MalformedInput

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}  # what the service reads
FLOATS = TypeAdapter(list[float])  # JSON tensor data of a float datatype: numbers only (strict: no booleans)


class Tensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=0)]] = Field(max_length=8)
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "1", "inputs": [{"name": "z", "shape": [1, 32], "datatype": "FP32", "data": [0.0] * 32}]}]})
    id: str | None = None
    # Not in the protocol's request, but KServe's client (InferRequest.to_rest) sends it: when given, it must be the
    # model the URL names.
    model_name: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[Tensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[float] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[OutputTensor]


def read_request(body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, np.ndarray]]:
    """The request and its input tensors (as arrays of their datatype, in their shape)."""
    json_part, blob = split_body(body, header_length)
    try:
        request = InferRequest.model_validate_json(json_part, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(where or "request", f"invalid inference request: {first['msg']}") from exc
    tensors, offset = {}, 0
    for i, tensor in enumerate(request.inputs):
        field = f"inputs[{i}] ({tensor.name})"
        if tensor.name in tensors:
            raise InvalidInput(field, "names an input given before: each input is given once")
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(blob):
                raise InvalidInput(field, f"binary_data_size {size!r} does not fit the {len(blob)} bytes after the "
                                   "JSON header")
            tensors[tensor.name] = from_bytes(tensor, blob[offset:offset + size], field)
            offset += size
        else:
            tensors[tensor.name] = from_json(tensor, field)
    if offset != len(blob):
        raise InvalidInput("inputs", f"{len(blob) - offset} bytes after the JSON header belong to no input")
    return request, tensors


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses (a header is latin-1 text)
    if not (header_length.isascii() and header_length.isdigit()) or not 0 < int(header_length) <= len(body):
        raise MalformedInput(HEADER_LENGTH, f"{HEADER_LENGTH} must be the JSON header's length, at most the body's "
                             f"{len(body)} bytes; got {header_length!r}")
    return body[:int(header_length)], body[int(header_length):]


def dtype_of(tensor: Tensor, field: str) -> np.dtype[Any]:
    """An input's datatype: every model input is FP32 (outputs may be FP64)."""
    if tensor.datatype != "FP32":
        raise InvalidInput(field, f"datatype {tensor.datatype!r}: the models' inputs are FP32", ["FP32"])
    return DATATYPES["FP32"]


def from_bytes(tensor: Tensor, raw: bytes, field: str) -> np.ndarray:
    dtype = dtype_of(tensor, field)
    if tensor.data is not None:
        raise InvalidInput(field, "has both data and binary_data_size")
    if len(raw) != math.prod(tensor.shape) * dtype.itemsize:
        raise InvalidInput(field, f"{len(raw)} bytes of binary data for shape {tensor.shape} of {tensor.datatype}, "
                           f"which takes {math.prod(tensor.shape) * dtype.itemsize}")
    return np.frombuffer(raw, dtype).reshape(tensor.shape)


def from_json(tensor: Tensor, field: str) -> np.ndarray:
    dtype = dtype_of(tensor, field)
    if tensor.data is None:
        raise InvalidInput(field, "has no data (nor a binary_data_size parameter)")
    # Flat data (what clients send, and the hot path) goes to the strict check as it is; a list inside it is refused
    # there as not a number. Nested data must nest exactly as the shape says, checked before any conversion.
    flat = nested_values(tensor.data, tensor.shape, field) if tensor.data and isinstance(tensor.data[0], list) \
        else tensor.data
    try:
        values = FLOATS.validate_python(flat, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(field, f"data[{first['loc'][0]}]: {first['msg']}") from exc
    if len(values) != math.prod(tensor.shape):
        raise InvalidInput(field, f"{len(values)} values for shape {tensor.shape}, which takes "
                           f"{math.prod(tensor.shape)}")
    with np.errstate(over="ignore"):  # values beyond the datatype's range become inf, refused downstream
        return np.asarray(values, dtype=dtype).reshape(tensor.shape)


def nested_values(data: list[Any], shape: list[int], field: str) -> list[Any]:
    """Row-major elements of data nested exactly as `shape`: a list of shape[0] lists of shape[1] ... elements.
    Any other nesting (too deep, too shallow, ragged) is refused, naming the first place that differs."""
    values: list[Any] = []

    def walk(node: list[Any], depth: int, where: str) -> None:
        if len(node) != shape[depth]:
            raise InvalidInput(field, f"data{where} has {len(node)} items, but shape {shape} has {shape[depth]} "
                               f"in dimension {depth}", shape)
        last = depth == len(shape) - 1
        for i, item in enumerate(node):
            if isinstance(item, list) == last:  # a list among the values, or a value among the rows
                wanted = "a value" if last else "a list"
                raise InvalidInput(field, f"data{where}[{i}] should be {wanted}: data is flat, or nested as "
                                   f"shape {shape}", shape)
        if last:
            values.extend(node)
        else:
            for i, item in enumerate(node):
                walk(item, depth + 1, f"{where}[{i}]")

    if not shape:
        raise InvalidInput(field, "data is nested, but shape [] holds one value", shape)
    walk(data, 0, "")
    return values


def write_response(response: InferResponse, arrays: list[np.ndarray], binary: list[bool]) -> tuple[bytes, int | None]:
    """The response body, and its JSON header's length when some outputs follow it as raw bytes (else None)."""
    blobs = []
    for output, array, raw in zip(response.outputs, arrays, binary, strict=True):
        dtype = DATATYPES[output.datatype]
        if raw:
            blob = np.ascontiguousarray(array, dtype=dtype).tobytes()
            output.parameters = {**(output.parameters or {}), "binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output.data = np.asarray(array, dtype=dtype).ravel().tolist()
    header = to_json(response.model_dump(exclude_none=True))
    return (header + b"".join(blobs), len(header)) if blobs else (header, None)
