"""Hand-written, kept for speed: +22% req/s on /encode with 64 PNGs (+13% with 1) over python-multipart (see
docs/performance.md).

multipart/form-data (RFC 7578, RFC 2046 section 5.1) parsed from a body already in memory. python-multipart
parses byte by byte through callbacks, and Starlette's `request.form()` adds a spooled temporary file per
part; the service reads the body whole anyway (its size capped by VAE_MAX_REQUEST_BYTES), so a parser that
finds the delimiters with `bytes.find` is enough. tests/service/test_multipart.py checks it part for part
against python-multipart on the same bodies.

    parse_form(body, content_type_header, max_parts) -> [Part(name, filename, content_type, data)]

Errors are `MultipartError` (malformed) or `TooManyParts`; the caller turns them into 400 and 422.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A parameter of a header value: name=token or name="quoted \" string" (RFC 7230 quoted-string).
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")
# The headers of a part as browsers, curl and httpx write them, matched at once (a fraction of the general
# parse, which a 64-image request would otherwise run 64 times): Content-Disposition with a quoted name and
# optional filename, both without quotes or backslashes inside, then an optional Content-Type.
_COMMON_HEADERS = re.compile(rb'content-disposition:[ \t]*form-data; name="([^"\\\r\n]*)"'
                             rb'(?:; filename="([^"\\\r\n]*)")?(?:\r\ncontent-type:([^\r\n]*))?', re.IGNORECASE)


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


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """'form-data; name="images"; filename="a.png"' -> ('form-data', {'name': 'images', 'filename': 'a.png'})."""
    head, _, rest = value.partition(";")
    params = {}
    for key, raw in _PARAM.findall(";" + rest):
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if "\\" in raw else raw[1:-1]
        params[key.lower()] = raw
    return head.strip().lower(), params


def parse_form(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    """Every part of a multipart/form-data body, in order."""
    _, params = header_params(content_type)
    boundary = params.get("boundary", "").encode("latin-1", "replace")
    if not 1 <= len(boundary) <= 70:  # RFC 2046: 1 to 70 characters
        raise MultipartError("the content-type has no valid boundary parameter")
    delimiter = b"--" + boundary
    separator = b"\r\n" + delimiter
    # The first delimiter may follow a preamble (which is ignored) or open the body.
    pos = 0 if body.startswith(delimiter) else body.find(separator)
    if pos < 0:
        raise MultipartError("the body holds no boundary delimiter")
    pos = body.index(delimiter, pos) + len(delimiter)
    parts: list[Part] = []
    while True:
        if body.startswith(b"--", pos):  # the close delimiter; an epilogue after it is ignored
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):  # only transport padding may follow a delimiter
            raise MultipartError("malformed boundary line")
        head_end = body.find(b"\r\n\r\n", line_end)  # at line_end itself when the part has no headers
        if head_end < 0:
            raise MultipartError("a part's headers are not terminated")
        data_end = body.find(separator, head_end + 4)
        if data_end < 0:
            raise MultipartError("the body ends inside a part (no closing boundary)")
        if len(parts) == max_parts:
            raise TooManyParts(f"more than {max_parts} parts")
        parts.append(_part(body[line_end + 2:head_end], body[head_end + 4:data_end]))
        pos = data_end + len(separator)


def _part(headers: bytes, data: bytes) -> Part:
    common = _COMMON_HEADERS.fullmatch(headers)
    if common is not None:  # what clients send; anything else (escapes, other headers) parses below
        name, filename, content_type = (None if g is None else g.decode("utf-8", "replace") for g in common.groups())
        assert name is not None
        return Part(name, filename, None if content_type is None else content_type.strip(), data)
    return _part_general(headers, data)


def _part_general(headers: bytes, data: bytes) -> Part:
    disposition, content_type = None, None
    for line in headers.decode("utf-8", "replace").split("\r\n"):
        if not line:  # a part without headers
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"malformed part header {line[:60]!r}")
        name = name.strip().lower()
        if name == "content-disposition":
            disposition = header_params(value)
        elif name == "content-type":
            content_type = value.strip()
    if disposition is None or disposition[0] != "form-data" or "name" not in disposition[1]:
        raise MultipartError("a part has no Content-Disposition: form-data; name=...")
    return Part(disposition[1]["name"], disposition[1].get("filename"), content_type, data)
