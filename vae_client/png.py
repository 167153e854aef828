"""8-bit pixels -> a PNG file, without Pillow: how uint8 arrays are uploaded, so the service reads exactly these
levels, as it would from the same image saved as a file.

PNG 1.2 (ISO/IEC 15948): signature, IHDR (bit depth 8, colour type 0 grey or 2 RGB, no interlace), one IDAT of
the zlib-compressed rows, each with filter type 0 (None), and IEND. Lossless: any decoder returns the levels.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type: grey, RGB


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(levels: np.ndarray) -> bytes:
    """(C, H, W) uint8 levels, C = 1 (grey) or 3 (RGB) -> the bytes of a PNG file."""
    if levels.dtype != np.uint8 or levels.ndim != 3 or levels.shape[0] not in COLOUR_TYPES:
        raise ValueError(f"a PNG here is made from (C, H, W) uint8 levels with C = 1 or 3, not {levels.dtype} "
                         f"{list(levels.shape)}")
    c, h, w = levels.shape
    rows = np.ascontiguousarray(levels.transpose(1, 2, 0)).reshape(h, w * c)
    filtered = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter type 0 before each row
    header = struct.pack(">IIBBBBB", w, h, 8, COLOUR_TYPES[c], 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)) + \
        chunk(b"IEND", b"")
