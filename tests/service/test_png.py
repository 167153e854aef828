"""The PNG encoder (service/png.py): any decoder gets back exactly the levels, and the adaptive row
filters compress as well as Pillow's."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from service.png import encode_pngs, filter_rows

RNG = np.random.default_rng(0)
SMOOTH = (np.add.outer(np.arange(20), np.arange(13)) * 6 % 256).astype(np.uint8)  # (20, 13)


def levels_cases() -> list[tuple[str, np.ndarray]]:
    return [
        ("grey random", RNG.integers(0, 256, (4, 1, 20, 13), dtype=np.uint8)),
        ("grey smooth", np.stack([SMOOTH[None], 255 - SMOOTH[None]])),
        ("rgb random", RNG.integers(0, 256, (3, 3, 7, 9), dtype=np.uint8)),
        ("rgb smooth", np.stack([SMOOTH, SMOOTH // 2, 255 - SMOOTH])[None]),
        ("constant", np.full((2, 1, 5, 5), 200, np.uint8)),
        ("one pixel", np.array([[[[7]]]], np.uint8)),
        ("one row, one column", RNG.integers(0, 256, (1, 3, 1, 17), dtype=np.uint8)),
    ]


def pillow_levels(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.load()  # reads every chunk, checking the CRCs and the zlib stream
    arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


@pytest.mark.parametrize(("name", "levels"), levels_cases(), ids=[n for n, _ in levels_cases()])
def test_pillow_decodes_exactly_the_levels(name, levels):
    files = encode_pngs(levels)
    assert len(files) == len(levels)
    for data, expected in zip(files, levels, strict=True):
        img = Image.open(io.BytesIO(data))
        assert img.format == "PNG" and img.mode == ("L" if levels.shape[1] == 1 else "RGB")
        np.testing.assert_array_equal(pillow_levels(data), expected)


def test_each_filter_undoes_to_the_rows():
    """Every filter type appears on some row, and reversing it by the PNG rules gives the rows back."""
    rows = np.concatenate([SMOOTH, RNG.integers(0, 256, (20, 13), dtype=np.uint8), 255 - SMOOTH])[None]
    out = filter_rows(rows, 1)[0]
    assert set(out[:, 0]) >= {1, 2}  # smooth rows pick a predicting filter
    prev = np.zeros(13, np.int32)
    for line, expected in zip(out, rows[0], strict=True):
        ftype, data, row = line[0], line[1:].astype(np.int32), np.zeros(13, np.int32)
        for i in range(13):
            a, b, c = (row[i - 1] if i else 0), prev[i], (prev[i - 1] if i else 0)
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            row[i] = (data[i] + [0, a, b, (a + b) // 2, paeth][ftype]) % 256
        np.testing.assert_array_equal(row, expected)
        prev = row


def test_compresses_like_pillow():
    smooth = np.stack([np.roll(SMOOTH, k, axis=1)[None] for k in range(8)])
    ours = sum(len(d) for d in encode_pngs(smooth))
    pillow = 0
    for img in smooth:
        buf = io.BytesIO()
        Image.fromarray(img[0]).save(buf, format="PNG")
        pillow += len(buf.getvalue())
    unfiltered = sum(len(zlib.compress(np.insert(img[0], 0, 0, axis=1).tobytes(), 6)) for img in smooth)
    assert ours <= 1.05 * pillow and ours < unfiltered


def test_an_image_alone_and_in_a_batch_gives_the_same_levels():
    """One image is encoded by Pillow, a batch by this module: both decode to exactly the levels."""
    batch = RNG.integers(0, 256, (5, 3, 6, 11), dtype=np.uint8)
    alone = [encode_pngs(image[None])[0] for image in batch]
    together = encode_pngs(batch)
    for a, b, expected in zip(alone, together, batch, strict=True):
        np.testing.assert_array_equal(pillow_levels(a), expected)
        np.testing.assert_array_equal(pillow_levels(b), expected)
