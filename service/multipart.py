"""multipart/form-data bodies (RFC 7578), parsed by python-multipart's parser from a body already in memory.

Why not Starlette's `request.form()`: it spools every file to a temporary file and wraps it in an UploadFile,
several times the parse itself for a request of small images (docs/performance.md). The service reads the
body whole anyway, its size capped by VAE_MAX_REQUEST_BYTES, so the parts are collected as bytes.

    parse_form(body, content_type_header, max_parts) -> [Part(name, filename, content_type, data)]

Errors are MultipartError (malformed) or TooManyParts; callers turn them into 400 and 422.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header


class MultipartError(ValueError):
    pass


class TooManyParts(MultipartError):
    pass


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None: a plain form field, not a file
    content_type: str | None
    data: bytes


@dataclass
class _Collector:
    """python-multipart's callbacks: each part's headers and data, gathered as bytes."""

    max_parts: int
    parts: list[Part] = field(default_factory=list)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    data: list[bytes] = field(default_factory=list)
    ended: bool = False

    def callbacks(self) -> dict[str, object]:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value_data, "on_header_end": self.header_end,
                "on_part_data": self.part_data, "on_part_end": self.part_end, "on_end": self.end}

    def part_begin(self) -> None:
        if len(self.parts) == self.max_parts:
            raise TooManyParts(f"more than {self.max_parts} parts")
        self.headers, self.data = {}, []

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[bytes(self.header_name).lower()] = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self.data.append(data[start:end])

    def part_end(self) -> None:
        disposition, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise MultipartError("a part has no Content-Disposition: form-data; name=...")
        filename = params.get(b"filename")
        content_type = self.headers.get(b"content-type")
        self.parts.append(Part(params[b"name"].decode("utf-8", "replace"),
                               None if filename is None else filename.decode("utf-8", "replace"),
                               None if content_type is None else content_type.decode("latin-1").strip(),
                               b"".join(self.data)))

    def end(self) -> None:
        self.ended = True


def parse_form(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    """Every part of a multipart/form-data body, in order."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 70:  # RFC 2046: 1 to 70 characters
        raise MultipartError("the content-type has no valid boundary parameter")
    collector = _Collector(max_parts)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise MultipartError(f"malformed body: {exc}") from exc
    if not collector.ended:
        raise MultipartError("the body ends before its closing boundary")
    return collector.parts
