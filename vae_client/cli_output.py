"""What the command line (cli.py) writes: plain-text tables for people, JSON and CSV for programs, and a grid
image of many images. JSON numbers are the client's numbers exactly (float32 values in their shortest decimal
form, which reads back as the same float32; float64 values as they are); an undefined value is null."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from vae_client.results import EncodeResult, Images, LogLikResult, ModelList

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

MEAN_SHOWN = 4  # latent dimensions the encode table shows (--json gives them all)


# --- general -------------------------------------------------------------------------------------------------

def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; right-aligned (numbers) except the columns in `left`; the last
    column is not padded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths,
                                                                                                 strict=True))]
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def number(value: float, digits: int) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}f}"


def exact(value: float) -> float | None:
    """A float64 for JSON: as it is, None where not finite (JSON has no NaN)."""
    return value if math.isfinite(value) else None


def short(array: np.ndarray) -> Any:
    """float32 values as nested lists of the shortest decimals that read back as the same float32s."""
    values = np.asarray(array, dtype=np.float32)
    flat = [float(str(v)) for v in values.ravel()]
    return np.asarray(flat, dtype=np.float64).reshape(values.shape).tolist()


# --- encode --------------------------------------------------------------------------------------------------

def encode_json(files: Sequence[str], result: EncodeResult) -> dict[str, Any]:
    """`{"model", "latent_dim", "results": [{"file", "mean", "logvar", "conversion"[, "levels"]}]}`."""
    items = []
    for i, name in enumerate(files):
        item: dict[str, Any] = {"file": name, "mean": short(result.mean[i]), "logvar": short(result.logvar[i]),
                                "conversion": result.conversions[i]}
        if result.levels is not None:
            item["levels"] = [{"name": level.name, "mean": short(level.mean[i]), "logvar": short(level.logvar[i])}
                              for level in result.levels]
        items.append(item)
    return {"model": result.model, "latent_dim": result.latent_dim, "results": items}


def encode_table(files: Sequence[str], result: EncodeResult) -> str:
    shown = min(MEAN_SHOWN, result.latent_dim)
    more = " ..." if result.latent_dim > shown else ""
    rows = []
    for i, name in enumerate(files):
        mean = result.mean[i].astype(np.float64)
        sd = float(np.exp(result.logvar[i].astype(np.float64) / 2).mean())
        rows.append([str(i), number(float(np.linalg.norm(mean)), 3), number(sd, 4),
                     " ".join(f"{v:+.4f}" for v in mean[:shown]) + more, name])
    title = (f"{result.model}: the posterior q(z|x) of each image, latent size {result.latent_dim} "
             f"(--json: every dimension, and the log-variances)")
    return title + "\n" + table(["#", "|mean|", "mean sd", f"mean[:{shown}]", "file"], rows, left=(3, 4))


# --- loglik --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogLikRow:
    """One image's log-likelihood estimate; `rank` 1 is the lowest log-likelihood (the most unusual image)."""

    rank: int
    file: str
    log_likelihood: float
    stderr: float
    bits_per_dim: float
    elbo: float
    effective_sample_size: float
    warning: str | None


CSV_COLUMNS = ["rank", "file", "log_likelihood", "stderr", "bits_per_dim", "elbo", "effective_sample_size",
               "warning"]


def ranked(files: Sequence[str], result: LogLikResult) -> list[LogLikRow]:
    """The images by log-likelihood, lowest first (ties and NaN kept in input order, NaN last)."""
    def key(i: int) -> tuple[bool, float]:
        value = float(result.log_likelihood[i])
        return (not math.isfinite(value), value if math.isfinite(value) else 0.0)

    order = sorted(range(len(files)), key=key)
    return [LogLikRow(rank, files[i], float(result.log_likelihood[i]), float(result.stderr[i]),
                      float(result.bits_per_dim[i]), float(result.elbo[i]), float(result.effective_sample_size[i]),
                      result.warnings[i]) for rank, i in enumerate(order, start=1)]


def loglik_title(result: LogLikResult) -> str:
    return (f"{result.model}, k={result.k}, seed {result.seed}: lowest log-likelihood first "
            f"(the most unusual images at the top)")


def loglik_table(rows: Sequence[LogLikRow], top: int | None = None) -> str:
    shown = rows if top is None else rows[:top]
    cells = [[str(r.rank), number(r.log_likelihood, 2), number(r.stderr, 3), number(r.bits_per_dim, 4),
              number(r.elbo, 2), number(r.effective_sample_size, 1) + ("!" if r.warning else ""), r.file]
             for r in shown]
    text = table(["rank", "log-lik (nats)", "stderr", "bits/dim", "ELBO", "ESS", "file"], cells, left=(6,))
    if len(shown) < len(rows):
        text += f"\n... {len(rows) - len(shown)} more (without --top: all)"
    warned = [r for r in rows if r.warning]
    if warned:
        text += f"\n! {plural(len(warned), 'estimate')} with a warning from the service, e.g.: {warned[0].warning}"
    return text


def write_csv(rows: Sequence[LogLikRow], stream: TextIO) -> None:
    """One row per image, in rank order; numbers as float64 repr (exact), an undefined value empty."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r.rank, r.file, *(csv_number(v) for v in (r.log_likelihood, r.stderr, r.bits_per_dim,
                                                                    r.elbo, r.effective_sample_size)),
                         r.warning or ""])


def csv_number(value: float) -> str:
    return repr(value) if math.isfinite(value) else ""


def loglik_json(rows: Sequence[LogLikRow], result: LogLikResult) -> dict[str, Any]:
    return {"model": result.model, "k": result.k, "seed": result.seed,
            "bits_per_dim_convention": result.bits_per_dim_convention, "order": "lowest log-likelihood first",
            "results": [{"rank": r.rank, "file": r.file, "log_likelihood": exact(r.log_likelihood),
                         "stderr": exact(r.stderr), "bits_per_dim": exact(r.bits_per_dim), "elbo": exact(r.elbo),
                         "effective_sample_size": exact(r.effective_sample_size), "warning": r.warning}
                        for r in rows]}


# --- images (sample, decode) ---------------------------------------------------------------------------------

def images_json(images: Images, written: Sequence[Path]) -> dict[str, Any]:
    """`{"model", "seed", "shape": [C, H, W], "written": [paths], "arrays": [N][C][H][W]}`."""
    return {"model": images.model, "seed": images.seed, "shape": list(images.arrays.shape[1:]),
            "written": [str(p) for p in written], "arrays": short(images.arrays)}


def images_table(images: Images) -> str:
    c, h, w = images.arrays.shape[1:]
    seed = "" if images.seed is None else f", seed {images.seed}"
    title = (f"{images.model}: {plural(len(images), 'image')} of {c}x{h}x{w}{seed} (write them with --out or "
             f"--grid/--dir, print their values with --json)")
    rows = [[str(i), number(float(a.min()), 3), number(float(a.max()), 3), number(float(a.mean()), 3)]
            for i, a in enumerate(images.arrays)]
    return title + "\n" + table(["#", "min", "max", "mean"], rows)


def grid_shape(n: int, columns: int | None) -> tuple[int, int]:
    """(rows, columns) of a grid of n images: `columns` (default: the square root of n, rounded up) per row."""
    cols = max(1, min(n, columns or math.ceil(math.sqrt(n))))
    return math.ceil(n / cols), cols


def grid(images: Images, columns: int | None = None, pad: int = 2) -> PILImage:
    """The images (their PNGs as the service made them) in one picture, row by row, `pad` white pixels around
    and between them: (cols * W + (cols + 1) * pad) x (rows * H + (rows + 1) * pad) pixels."""
    from PIL import Image

    tiles = images.to_pil()
    mode = "RGB" if any(t.mode != "L" for t in tiles) else "L"
    rows, cols = grid_shape(len(tiles), columns)
    w, h = tiles[0].size
    white = 255 if mode == "L" else (255, 255, 255)
    picture = Image.new(mode, (cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad), white)
    for i, tile in enumerate(tiles):
        row, col = divmod(i, cols)
        picture.paste(tile.convert(mode), (pad + col * (w + pad), pad + row * (h + pad)))
    return picture


# --- models --------------------------------------------------------------------------------------------------

def models_json(listed: ModelList) -> dict[str, Any]:
    return {"default": listed.default, "skipped": listed.skipped,
            "models": [{"name": m.name, "default": m.default, "providers": m.providers, "manifest": m.manifest}
                       for m in listed]}


def models_table(listed: ModelList) -> str:
    rows = []
    for m in listed:
        metrics = m.metrics
        rows.append([m.name, "*" if m.default else "", "+".join(str(d) for d in m.latent_dims),
                     "x".join(str(d) for d in m.image_shape), likelihood(m.manifest),
                     metric(metrics, "elbo", 2), metric(metrics, "log_likelihood", 2),
                     metric(metrics, "bits_per_dim", 3), m.description])
    text = table(["name", "default", "latent", "image", "likelihood", "test ELBO", "test log-lik", "bits/dim",
                  "description"], rows, left=(0, 1, 2, 3, 4, 8))
    for folder, reason in listed.skipped.items():
        text += f"\nskipped {folder}: {reason}"
    return text


def likelihood(manifest: dict[str, Any]) -> str:
    spec = manifest.get("likelihood")
    return str(spec.get("type", "")) if isinstance(spec, dict) else str(spec or "")


def metric(metrics: dict[str, Any], name: str, digits: int) -> str:
    value = metrics.get(name)
    return number(float(value), digits) if isinstance(value, int | float) else "-"
