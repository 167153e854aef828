"""The baseline: a plain FastAPI server of the kind users write by hand. It loads the two ONNX sessions at
start-up and calls them directly in (synchronous) routes: no batching, no limits, no metrics.

    uvicorn benchmarks.plain_server:app --port 8001      (MODEL_DIR=models/fashion-mnist by default)
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from pydantic import BaseModel

MODEL_DIR = Path(os.environ.get("MODEL_DIR", "models/fashion-mnist"))
manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
SIGMA = manifest["likelihood"]["sigma"]
D = manifest["latent_dim"]
encoder = ort.InferenceSession(str(MODEL_DIR / "encoder.onnx"), providers=["CPUExecutionProvider"])
decoder = ort.InferenceSession(str(MODEL_DIR / "decoder.onnx"), providers=["CPUExecutionProvider"])
app = FastAPI()


def to_x(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data)).convert("L").resize((28, 28))
    return ((np.asarray(img, dtype=np.float32) + 0.5) / 256)[None, None]


def to_png(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray((np.clip(image[0], 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Z(BaseModel):
    z: list[list[float]]


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.post("/encode")
def encode(images: Annotated[list[UploadFile], File()]) -> dict:
    x = np.concatenate([to_x(f.file.read()) for f in images])
    mu, logvar = encoder.run(None, {"x": x})
    return {"results": [{"mean": m.tolist(), "logvar": v.tolist()} for m, v in zip(mu, logvar, strict=True)]}


@app.post("/decode")
def decode(body: Z) -> dict:
    (mean,) = decoder.run(None, {"z": np.asarray(body.z, dtype=np.float32)})
    return {"images": [to_png(m) for m in mean]}


@app.get("/sample")
def sample(n: int = 16, seed: int = 0) -> dict:
    z = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    (mean,) = decoder.run(None, {"z": z})
    return {"images": [to_png(m) for m in mean]}


@app.post("/loglik")
def loglik(images: Annotated[list[UploadFile], File()], k: int = 1000, seed: int = 0) -> dict:
    x = np.concatenate([to_x(f.file.read()) for f in images]).astype(np.float64)
    mu, logvar = (a.astype(np.float64) for a in encoder.run(None, {"x": x.astype(np.float32)}))
    eps = np.random.default_rng(seed).standard_normal((k, *mu.shape))
    z = mu + np.exp(0.5 * logvar) * eps  # (K, N, D)
    (mean,) = decoder.run(None, {"z": z.reshape(-1, D).astype(np.float32)})
    mean = mean.reshape(k, len(x), -1).astype(np.float64)
    log_px = (-0.5 * np.sum((x.reshape(1, len(x), -1) - mean) ** 2, -1) / SIGMA**2
              - mean.shape[-1] * (math.log(SIGMA) + 0.5 * math.log(2 * math.pi)))
    lw = log_px - 0.5 * np.sum(z**2, -1) + 0.5 * np.sum(logvar + eps**2, -1)
    m = lw.max(0)
    return {"log_likelihood": (m + np.log(np.exp(lw - m).mean(0))).tolist()}
