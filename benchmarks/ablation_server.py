"""The service with one hand-written part swapped for the library it replaces, for benchmarks/ablation.py.

    ABLATE=multipart python benchmarks/ablation_server.py --port 8001   # python-multipart's parser
    ABLATE=png       python benchmarks/ablation_server.py --port 8001   # Pillow's PNG encoder
(The route class has its own setting: VAE_LEAN_ROUTES=false.) Benchmark code only: the swap replaces module
attributes before the app is built.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import service.images  # noqa: E402
import service.vae_requests  # noqa: E402
from service.__main__ import main  # noqa: E402
from service.multipart import MultipartError, Part  # noqa: E402


def python_multipart_form(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    """python-multipart's parser over the in-memory body, parts collected as bytes."""
    from python_multipart import MultipartParser
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import parse_options_header

    parts: list[Part] = []
    headers: dict[bytes, bytes] = {}
    data: list[bytes] = []
    field, value = bytearray(), bytearray()

    def header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def part_end() -> None:
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        if b"name" not in params:
            raise MultipartError("a part has no name")
        filename, ctype = params.get(b"filename"), headers.get(b"content-type")
        parts.append(Part(params[b"name"].decode(), None if filename is None else filename.decode(),
                          None if ctype is None else ctype.decode().strip(), b"".join(data)))
        headers.clear()
        data.clear()
        if len(parts) > max_parts:
            raise MultipartError(f"more than {max_parts} parts")

    boundary = parse_options_header(content_type)[1].get(b"boundary", b"")
    parser = MultipartParser(boundary, {
        "on_header_field": lambda d, s, e: field.extend(d[s:e]),
        "on_header_value": lambda d, s, e: value.extend(d[s:e]),
        "on_header_end": header_end, "on_part_data": lambda d, s, e: data.append(d[s:e]), "on_part_end": part_end})
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise MultipartError(str(exc)) from exc
    return parts


def pillow_pngs(levels: np.ndarray) -> list[bytes]:
    """(N, C, H, W) uint8 -> N PNG files, one Pillow `save` each."""
    files = []
    for image in levels:
        buf = io.BytesIO()
        Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(buf, format="PNG")
        files.append(buf.getvalue())
    return files


if __name__ == "__main__":
    ablate = os.environ.get("ABLATE", "")
    if ablate == "multipart":
        service.vae_requests.parse_form = python_multipart_form
    elif ablate == "png":
        service.images.encode_pngs = pillow_pngs
    elif ablate:
        sys.exit(f"unknown ABLATE={ablate!r}: multipart or png")
    sys.exit(main(sys.argv[1:]))
