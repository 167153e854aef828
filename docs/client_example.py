"""The Python client, end to end, against a running service with the shipped models (docs/client.md):

    python -m service --port 8765 &          # or: make serve
    python docs/client_example.py http://127.0.0.1:8765
"""

import asyncio
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image  # only for the example's uint8 array; the client needs Pillow only for to_pil()

from vae_client import AsyncClient, Client, InvalidInputError, NotFoundError

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
BOOT = Path(__file__).parent / "example-ankle-boot.png"
TROUSER = Path(__file__).parent / "example-trouser.png"

with Client(URL) as vae:
    vae.wait_ready()
    models = vae.models()
    print("models:", models.names, "default:", models.default)
    info = vae.model()  # the default model
    print(f"{info.name}: latent {info.latent_dim}, image {info.image_shape}, "
          f"test bits/dim {info.metrics['bits_per_dim']:.3f}, attributes {info.attributes[:3]}...")

    enc = vae.encode([BOOT, TROUSER], samples=2, seed=1)
    assert enc.samples is not None  # there when asked for (typed: None otherwise)
    print("encode: mean", enc.mean.shape, enc.mean.dtype, "samples", enc.samples.shape, "seed", enc.seed)
    print("  mean[0][:4] =", np.round(enc.mean[0, :4], 4))

    reconstruction = vae.decode(enc.mean)
    print("decode:", reconstruction.arrays.shape, reconstruction.arrays.dtype,
          f"values in [{reconstruction.arrays.min():.3f}, {reconstruction.arrays.max():.3f}]")
    same = vae.reconstruct([BOOT, TROUSER])
    print("reconstruct equals decode(mean):", same.png == reconstruction.png)

    levels = np.asarray(Image.open(BOOT))  # the file's 8-bit levels, [28, 28] uint8
    print("uint8 array encodes as the file:", np.array_equal(vae.encode(levels).mean, enc.mean[:1]))

    scores = vae.loglik([BOOT, TROUSER], k=1000, seed=0)
    for name, ll, bpd, se, ess in zip(["ankle boot", "trouser"], scores.log_likelihood, scores.bits_per_dim,
                                      scores.stderr, scores.effective_sample_size, strict=True):
        print(f"loglik {name}: {ll:.2f} nats +- {se:.3f}, {bpd:.3f} bits/dim, ESS {ess:.0f} (k={scores.k})")

    samples = vae.sample(300, seed=7, temperature=0.8)  # over the service's 256 per request: two requests
    with tempfile.TemporaryDirectory() as folder:
        files = samples.save(folder)
        print(f"sample: {len(samples)} images, seed {samples.seed}, saved {len(files)} PNGs, first {files[0].name}")
    print("  as PIL:", samples.to_pil()[0].size, samples.to_pil()[0].mode)

    edited = vae.resynthesize(BOOT, direction="sneakers-to-boots", strength=-1.0)
    path = vae.interpolate([BOOT, TROUSER], steps=6, method="slerp")
    assert edited.z is not None and path.z is not None  # the codes these calls chose
    print("resynthesize: z", edited.z.shape, "moved by", np.round(np.linalg.norm(edited.z - enc.mean[:1]), 3))
    print("interpolate:", len(path), "images, path z", path.z.shape, "norms",
          np.round(np.linalg.norm(path.z, axis=1), 2))

    two = vae.encode(BOOT, model="fashion-mnist-two-level")
    assert two.levels is not None  # a two-level model
    print("two-level levels:", [(level.name, level.mean.shape) for level in two.levels])

    try:
        vae.loglik(BOOT, k=10**6)
    except InvalidInputError as exc:
        print("error:", type(exc).__name__, exc.status, exc.field, exc.limit)
    try:
        vae.sample(2, model="nope")
    except NotFoundError as exc:
        print("error:", type(exc).__name__, exc.status, exc.field, exc.limit)


async def concurrently(expected: np.ndarray) -> None:
    async with AsyncClient(URL) as vae:
        batches = await asyncio.gather(*(vae.sample(4, seed=seed) for seed in range(3)))
        print("async: seeds", [b.seed for b in batches], "images", [len(b) for b in batches])
        enc = await vae.encode([BOOT, TROUSER], samples=2, seed=1)
        print("async encode equals sync:", np.array_equal(enc.mean, expected))


asyncio.run(concurrently(enc.mean))
