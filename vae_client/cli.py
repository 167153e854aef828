"""vae-client: the VAE service from the command line, over HTTP (the `vae_client.Client`). Also `python -m
vae_client`. `vae-client COMMAND --help` lists a command's flags with their defaults.

    vae-client models
    vae-client encode docs/example-ankle-boot.png --json > z.json
    vae-client decode z.json --out decoded/
    vae-client sample --n 16 --seed 0 --out grid.png
    vae-client loglik photos/ --k 1000 --seed 0 --csv ranking.csv    # lowest log-likelihood (most unusual) first

The service: --url, else $VAE_URL, else http://127.0.0.1:8000; its API key: --api-key, else $VAE_API_KEY.
Exit codes: 0 done, 1 the service refused or failed (its message, field and limit on stderr) or could not be
reached, 2 a usage error (an unknown flag, a missing or unreadable file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

import httpx

from vae_client.chunks import fresh_seed
from vae_client.cli_inputs import InputError, image_files, load_images, read_latents
from vae_client.cli_output import (
    encode_json,
    encode_table,
    grid,
    grid_shape,
    images_json,
    images_table,
    loglik_json,
    loglik_table,
    loglik_title,
    models_json,
    models_table,
    plural,
    ranked,
    write_csv,
)
from vae_client.cli_progress import Progress
from vae_client.client import Client
from vae_client.config import DEFAULT_TIMEOUT
from vae_client.errors import AuthenticationError, NetworkError, VAEClientError
from vae_client.images import ImageInput
from vae_client.limits import DEFAULT_MAX_IMAGES
from vae_client.results import EncodeResult, Images, LogLikResult

PROG = "vae-client"
DEFAULT_URL = "http://127.0.0.1:8000"
T = TypeVar("T")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written (the examples keep their lines), each flag's default after its help."""


# --- the parser ------------------------------------------------------------------------------------------------

def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """The options of every command, taken before or after the command's name. Their defaults are SUPPRESS so
    that a command's parser does not overwrite what was given before the name; `connect` resolves them."""
    p.add_argument("--url", default=argparse.SUPPRESS,
                   help=f"the service's base URL (default: $VAE_URL, else {DEFAULT_URL})")
    p.add_argument("--api-key", default=argparse.SUPPRESS, metavar="KEY",
                   help="API key, sent as 'Authorization: Bearer KEY' (default: $VAE_API_KEY, else none)")
    p.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                   help=f"to connect, and between bytes of an answer (default: {DEFAULT_TIMEOUT:g})")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress line on stderr (it is shown only when stderr is a terminal) (default: off)")


def add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="a model name from 'vae-client models' (default: %(default)s = the service's "
                   "default model)")


def add_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMG_OR_DIR",
                   help="image files (PNG, JPEG; BMP, GIF and WebP are sent as PNG) or folders: a folder gives its "
                   ".png .jpg .jpeg .bmp .gif .webp files, sorted by name")
    p.add_argument("-r", "--recursive", action="store_true", help="folders give their subfolders' images too")
    p.add_argument("--chunk", type=positive, default=DEFAULT_MAX_IMAGES, metavar="N",
                   help="images per step of the progress line (one client call each, which the client splits "
                   "further within the service's per-request limit)")
    add_model_arg(p)


def add_picture_args(p: argparse.ArgumentParser, prefix: str) -> None:
    """The options of the commands that make images (sample, decode); --out is each command's own."""
    p.add_argument("--columns", type=positive, metavar="N",
                   help="images per row of the grid (default: %(default)s = the square root of the number of "
                   "images, rounded up)")
    p.add_argument("--pad", type=not_negative, default=2, metavar="PIXELS",
                   help="white pixels around and between the images of the grid")
    p.add_argument("--prefix", default=prefix, help="file names in --dir: PREFIX-0000.png, PREFIX-0001.png, ...")
    p.add_argument("--json", action="store_true",
                   help="print JSON: model, seed, shape [C, H, W], the files written, and the images' values "
                   "[N][C][H][W] (the model's values as the service computed them)")
    add_model_arg(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    add_connection_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND",
                                help=f"each command's flags: {PROG} COMMAND --help")

    def command(name: str, text: str, details: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text + ("\n\n" + details if details else ""),
                           formatter_class=HelpFormatter)
        add_connection_args(p)
        return p

    p = command("models", "list the service's models: latent size, image shape, test metrics")
    p.add_argument("--json", action="store_true", help="print JSON: the default, each model's full manifest, and "
                   "the folders the service skipped")

    p = command("encode", "the posterior q(z|x) of each image: its mean and log-variance",
                "The table shows each mean's first dimensions; --json gives every number, one object per image\n"
                "(decode reads it back: vae-client encode a.png --json | vae-client decode - --out recon/).")
    add_image_args(p)
    p.add_argument("--json", action="store_true", help="print JSON: model, latent_dim, and per image its file, "
                   "mean, logvar (and levels, for two-level models)")

    p = command("loglik", "importance-sampled log-likelihood of each image, lowest first (anomaly ranking)",
                "Rank 1 is the image with the lowest log-likelihood: the one the model finds most unusual. Each\n"
                "row: log Pr(x) in nats, its standard error, bits/dim, the ELBO and the effective sample size\n"
                "(ESS; '!' marks an estimate the service warns about). The same --seed and --k give the same\n"
                "numbers, whatever the chunking or the order of the images.")
    add_image_args(p)
    p.add_argument("--k", type=int, default=1000, help="importance samples per image (the service caps it)")
    p.add_argument("--seed", type=int, help="seed of the estimate (default: %(default)s = a random one, printed)")
    p.add_argument("--csv", metavar="FILE", help="write the ranking as CSV (rank, file, log_likelihood, stderr, "
                   "bits_per_dim, elbo, effective_sample_size, warning); '-': to stdout, instead of the table "
                   "(default: %(default)s = no CSV)")
    p.add_argument("--top", type=positive, metavar="N", help="show only the N most unusual images in the table "
                   "(default: %(default)s = all; --csv and --json always have all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table: model, k, seed, and the "
                   "ranked results")

    p = command("sample", "draw images from the model's prior; write them as one grid and/or one PNG each")
    p.add_argument("--n", type=positive, default=16, help="number of images")
    p.add_argument("--seed", type=int, help="seed of the draws (default: %(default)s = a random one, printed)")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the prior's noise")
    p.add_argument("--noise", action="store_true", help="draw x ~ Pr(x|z) instead of the decoder's mean")
    p.add_argument("--out", "--grid", dest="grid", metavar="FILE",
                   help="write the images as one grid picture (PNG) (default: %(default)s = no grid)")
    p.add_argument("--dir", metavar="DIR",
                   help="write each image as a PNG file in DIR (default: %(default)s = no files)")
    add_picture_args(p, "sample")

    p = command("decode", "decode latent vectors read from a JSON file into images",
                "The file holds a list of latent vectors (each of the model's latent size), one vector,\n"
                '{"z": [...]}, or the output of encode --json (each image\'s mean); "-" reads stdin.')
    p.add_argument("z", metavar="Z_JSON", help="the JSON file of latent vectors ('-': standard input)")
    p.add_argument("--noise", action="store_true", help="draw x ~ Pr(x|z) instead of the decoder's mean")
    p.add_argument("--seed", type=int, help="seed of the --noise draws (default: %(default)s = a random one)")
    p.add_argument("--out", "--dir", dest="dir", metavar="DIR",
                   help="write each image as a PNG file in DIR (default: %(default)s = no files)")
    p.add_argument("--grid", metavar="FILE", help="write the images as one grid picture (PNG) (default: "
                   "%(default)s = no grid)")
    add_picture_args(p, "image")
    return parser


# --- the commands ----------------------------------------------------------------------------------------------

def connect(args: argparse.Namespace) -> Client:
    url = getattr(args, "url", None) or os.environ.get("VAE_URL") or DEFAULT_URL
    key = getattr(args, "api_key", None) or os.environ.get("VAE_API_KEY") or None
    try:
        return Client(url, api_key=key, timeout=getattr(args, "timeout", DEFAULT_TIMEOUT))
    except httpx.InvalidURL as exc:
        raise InputError(f"--url {url}: {exc}") from exc


def in_chunks(args: argparse.Namespace, label: str, paths: Sequence[Path],
              call: Callable[[list[ImageInput]], T]) -> list[T]:
    """`call` on consecutive chunks of the images (read just before their call), advancing the progress line."""
    results = []
    with Progress(label, len(paths), enabled=not getattr(args, "quiet", False) and len(paths) > 1) as bar:
        for start in range(0, len(paths), args.chunk):
            chunk = paths[start:start + args.chunk]
            results.append(call(load_images(chunk)))
            bar.advance(len(chunk))
    return results


def cmd_models(client: Client, args: argparse.Namespace) -> None:
    listed = client.models()
    print(json.dumps(models_json(listed)) if args.json else models_table(listed))


def cmd_encode(client: Client, args: argparse.Namespace) -> None:
    paths = image_files(args.images, args.recursive)
    parts = in_chunks(args, "encode", paths, lambda images: client.encode(images, model=args.model))
    result = EncodeResult.join(parts, None)
    names = [str(p) for p in paths]
    print(json.dumps(encode_json(names, result)) if args.json else encode_table(names, result))


def cmd_loglik(client: Client, args: argparse.Namespace) -> None:
    paths = image_files(args.images, args.recursive)
    seed = fresh_seed() if args.seed is None else args.seed  # one seed for every chunk: a run is one estimate
    parts = in_chunks(args, "loglik", paths, lambda images: client.loglik(images, model=args.model, k=args.k,
                                                                          seed=seed))
    result = LogLikResult.join(parts)
    rows = ranked([str(p) for p in paths], result)
    if args.csv == "-":
        write_csv(rows, sys.stdout)
        return
    if args.csv:
        with open_output(args.csv) as stream:
            write_csv(rows, stream)
    if args.json:
        print(json.dumps(loglik_json(rows, result)))
        return
    print(loglik_title(result) + "\n" + loglik_table(rows, args.top))
    if args.csv:
        print(f"wrote {args.csv}: {len(rows)} rows, lowest log-likelihood first")


def cmd_sample(client: Client, args: argparse.Namespace) -> None:
    images = client.sample(args.n, model=args.model, seed=args.seed, temperature=args.temperature,
                           noise=args.noise)
    write_images(images, args, args.grid, args.dir)


def cmd_decode(client: Client, args: argparse.Namespace) -> None:
    z = read_latents(args.z)
    images = client.decode(z, model=args.model, noise=args.noise, seed=args.seed)
    write_images(images, args, args.grid, args.dir)


def write_images(images: Images, args: argparse.Namespace, grid_file: str | None, folder: str | None) -> None:
    """The images as a grid picture and/or one PNG each, then a report: JSON with --json, else what was written
    (or, when nothing was, a table of each image's values)."""
    written: list[Path] = []
    seed = "" if images.seed is None else f", seed {images.seed}"
    notes = [f"{plural(len(images), 'image')} from {images.model}{seed}"]
    if grid_file:
        written.append(Path(grid_file))
        notes.append(write_grid(images, written[-1], args.columns, args.pad))
    if folder:
        files = images.save(folder, prefix=args.prefix)
        written.extend(files)
        names = files[0].name if len(files) == 1 else f"{files[0].name} ... {files[-1].name}"
        notes.append(f"wrote {plural(len(files), 'PNG file')} to {folder}: {names}")
    if args.json:
        print(json.dumps(images_json(images, written)))
    elif written:
        print("\n".join(notes))
    else:
        print(images_table(images))


def write_grid(images: Images, path: Path, columns: int | None, pad: int) -> str:
    """Writes the grid picture (its folder made if missing); what was written, in words."""
    picture = grid(images, columns, pad)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")
    rows, cols = grid_shape(len(images), columns)
    return f"wrote {path}: {plural(rows, 'row')} x {plural(cols, 'column')}, {picture.width} x {picture.height} pixels"


def open_output(name: str) -> TextIO:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", newline="")


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], None]] = {
    "models": cmd_models, "encode": cmd_encode, "loglik": cmd_loglik, "sample": cmd_sample, "decode": cmd_decode}


# --- running ---------------------------------------------------------------------------------------------------

def report(exc: VAEClientError, url: str) -> None:
    """The service's error on stderr: status, field, message and limit, each further validation error, the
    request id, and a hint for the errors a flag fixes."""
    lines = [f"{PROG}: error: {exc}"]
    lines += [f"  {e.get('field')}: {e.get('message')}" for e in exc.errors[1:]]
    if exc.request_id:
        lines.append(f"  request id: {exc.request_id}")
    if isinstance(exc, NetworkError):
        lines.append(f"  (is the service running at {url}? set --url or $VAE_URL)")
    elif isinstance(exc, AuthenticationError):
        lines.append("  (give the API key: --api-key or $VAE_API_KEY)")
    print("\n".join(lines), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit code: 0 done, 1 a service error, 2 a usage error (argparse's own
    usage errors exit 2 from parse_args)."""
    args = build_parser().parse_args(argv)
    try:
        with connect(args) as client:
            try:
                COMMANDS[args.command](client, args)
            except VAEClientError as exc:
                report(exc, client.base_url)
                return 1
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # an output file or folder that cannot be written
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0
