"""One HTTP request of a call, described without sending it (the clients send it: client.py, async_client.py)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar

from vae_client.images import ArrayPart, FilePart, Part

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """A request: method, path, query options, and a body of image files (multipart) or JSON. `indices`: the
    position in the caller's input of each item the body carries, for error fields (errors.py `reindexed`)."""

    method: Literal["GET", "POST"]
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: bytes | None = None
    files: tuple[FilePart, ...] = ()
    indices: tuple[int, ...] | None = None

    def request_args(self) -> dict[str, Any]:
        """Keyword arguments of httpx's `request` for this call."""
        args: dict[str, Any] = {"method": self.method, "url": self.path, "params": self.params}
        if self.files:
            args["files"] = [("images", (f.filename, f.data, f.content_type)) for f in self.files]
        elif self.json is not None:
            args["content"] = self.json
            args["headers"] = {"content-type": "application/json"}
        return args


# A call's steps: a generator that yields each request, is sent its JSON answer (or has its error thrown in),
# and returns the call's result. The same operation runs under the sync and the async client.
Operation: TypeAlias = Generator[Call, Any, T]


def query(**options: Any) -> dict[str, str]:
    """Query options as the service reads them: None left out, booleans exactly true or false."""
    out = {}
    for name, value in options.items():
        if value is None:
            continue
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def json_list(name: str, items: Sequence[bytes]) -> bytes:
    """`{"name": [item, ...]}` from items already JSON text."""
    return b'{"' + name.encode() + b'":[' + b",".join(items) + b"]}"


def image_call(path: str, params: dict[str, str], parts: Sequence[Part], indices: Sequence[int]) -> Call:
    """A request carrying the parts at `indices`, all of one form: image files, or JSON arrays."""
    chosen = [parts[i] for i in indices]
    files = tuple(p for p in chosen if isinstance(p, FilePart))
    arrays = [p.json for p in chosen if isinstance(p, ArrayPart)]
    if files and arrays:
        raise ValueError("one request carries image files or arrays, not both")
    if files:
        return Call("POST", path, params, files=files, indices=tuple(indices))
    return Call("POST", path, params, json=json_list("arrays", arrays), indices=tuple(indices))
