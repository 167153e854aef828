"""Pictures of the service's editing endpoints (docs/studies.md, the README), made over HTTP against a running server.

    python -m service &                      # the default model on 127.0.0.1:8000
    python scripts/service_pictures.py       # writes docs/resynthesis.png and docs/interpolation.png

Uses Fashion-MNIST test images (Debian's dataset-fashion-mnist) as inputs.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from service.images import grid, to_uint8
from training.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def tile(rows: list[list[np.ndarray]], pad: int = 2, scale: int = 3) -> Image.Image:
    """rows of equal-size (H, W) uint8 images -> one grid image (service.images.grid, a row per list; short
    rows end in white), scaled up."""
    ncols = max(map(len, rows))
    white = np.full_like(rows[0][0], 255)
    levels = np.stack([img for row in rows for img in [*row, *[white] * (ncols - len(row))]])  # (N, H, W)
    pic = Image.fromarray(to_uint8(grid(levels[:, None] / 255.0, ncols, pad))[0])  # k / 255 -> k exactly
    return pic.resize((pic.width * scale, pic.height * scale), Image.Resampling.NEAREST)


def decoded(response: httpx.Response) -> list[np.ndarray]:
    response.raise_for_status()
    import base64

    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(s)))) for s in response.json()["images"]]


def resynthesis(client: httpx.Client, images: np.ndarray, labels: np.ndarray, out: Path) -> Path:
    """Rows: a T-shirt/top, its reconstruction, then tops-to-dresses at strength 0.5, 1, 1.5; then the
    same for sneakers-to-boots."""
    rows = []
    for direction, source in (("tops-to-dresses", 0), ("sneakers-to-boots", 7)):
        picked = images[labels == source][:8]
        files = [("images", (f"{i}.png", png(im), "image/png")) for i, im in enumerate(picked)]
        rows.append(list(picked))
        for strength in (0.0, 0.5, 1.0, 1.5):
            r = client.post("/resynthesize", params={"direction": direction, "strength": strength}, files=files)
            rows.append(decoded(r))
    path = out / "resynthesis.png"
    tile(rows).save(path)
    return path


def interpolation(client: httpx.Client, images: np.ndarray, labels: np.ndarray, out: Path) -> Path:
    """Rows: linear and spherical paths between pairs of test images of different classes."""
    rows = []
    for a, b in ((1, 3), (5, 9), (0, 8)):  # trouser -> dress, sandal -> ankle boot, top -> bag
        pair = [images[labels == a][0], images[labels == b][0]]
        files = [("images", (f"{i}.png", png(im), "image/png")) for i, im in enumerate(pair)]
        for method in ("linear", "slerp"):
            r = client.post("/interpolate", params={"steps": 10, "method": method}, files=files)
            rows.append([pair[0], *decoded(r), pair[1]])
    path = out / "interpolation.png"
    tile(rows).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    test = load_fashion_mnist(FASHION_MNIST_DIR, "test")
    images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    with httpx.Client(base_url=args.url, timeout=60) as client:
        for path in (resynthesis(client, images, labels, args.out), interpolation(client, images, labels, args.out)):
            print(path)
    print("classes:", ", ".join(FASHION_MNIST_CLASSES))


if __name__ == "__main__":
    main()
