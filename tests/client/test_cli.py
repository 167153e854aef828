"""The command line (`vae-client`, vae_client/cli.py) as a real subprocess against the real service (the `server`
fixture: API keys on, 3 images per request, 5 per sample, k up to 500): its numbers against `Client`'s for the
same call, the files it writes, the environment's URL and key, and its exit codes."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.client.conftest import API_KEY, DIGITS, EXAMPLE, MAX_K, MAX_SAMPLES, ROOT, TROUSER, TWO_LEVEL, Server
from vae_client import Client
from vae_client.cli_progress import Progress

SCRIPT = Path(sys.executable).parent / "vae-client"  # the console script pyproject.toml declares
K = 20  # importance samples per image: few, for speed (the numbers are compared exactly, not judged)


def run(*args: object, env: dict[str, str] | None = None, stdin: str | None = None,
        module: bool = False) -> subprocess.CompletedProcess[str]:
    """The command line with these arguments, in the repository, without VAE_URL and VAE_API_KEY unless `env`
    gives them; `module`: as `python -m vae_client` instead of the script."""
    base = {k: v for k, v in os.environ.items() if k not in ("VAE_URL", "VAE_API_KEY")}
    command = [sys.executable, "-m", "vae_client"] if module else [str(SCRIPT)]
    return subprocess.run([*command, *map(str, args)], cwd=ROOT, env={**base, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=120)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress line: stderr is not a terminal
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def vae(server: Server):
    with Client(server.url, api_key=API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def connect(server: Server) -> list[str]:
    return ["--url", server.url, "--api-key", API_KEY]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images to rank: the two examples, three pictures made from arrays with Pillow, a text file (skipped), and
    in a subfolder a BMP (sent as PNG) and a PNG, taken only with --recursive."""
    root = tmp_path_factory.mktemp("images")
    (root / "a-boot.png").write_bytes(EXAMPLE.read_bytes())
    (root / "b-trouser.png").write_bytes(TROUSER.read_bytes())
    rng = np.random.default_rng(0)
    pictures = {"c-noise.png": rng.integers(0, 256, (28, 28)), "d-gradient.png": np.tile(np.arange(28) * 9, (28, 1)),
                "e-square.png": np.pad(np.full((14, 14), 255), 7)}
    for name, levels in pictures.items():
        Image.fromarray(levels.astype(np.uint8)).save(root / name)
    (root / "notes.txt").write_text("not an image")
    (root / "sub").mkdir()
    Image.open(TROUSER).save(root / "sub" / "f-trouser.bmp")
    (root / "sub" / "g-boot.png").write_bytes(EXAMPLE.read_bytes())
    return root


def test_help_of_every_command_shows_each_flag_and_its_default():
    top = ok(run("--help"))
    assert "usage: vae-client" in top and "VAE_URL" in top and "VAE_API_KEY" in top
    for command in ("models", "encode", "loglik", "sample", "decode"):
        assert command in top
    shown = {"models": ["--json"], "encode": ["--recursive", "--model", "(default: 64)"],
             "loglik": ["--k", "(default: 1000)", "--csv", "lowest", "most unusual", "--seed"],
             "sample": ["--n", "(default: 16)", "--out", "--seed", "(default: 1.0)", "--model"],
             "decode": ["Z_JSON", "--out", "--grid", "(default: image)", "--model"]}
    for command, words in shown.items():
        text = " ".join(ok(run(command, "--help")).split())  # as one line, however argparse wrapped it
        assert text.startswith(f"usage: vae-client {command}")
        for word in ["--url", "--api-key", *words]:
            assert word in text, (command, word)
    assert ok(run("loglik", "--help", module=True)) == ok(run("loglik", "--help"))  # python -m vae_client


def test_models_lists_the_models(vae: Client, connect: list[str]):
    table = ok(run("models", *connect))
    for name in (DIGITS, TWO_LEVEL, "fashion-mnist"):
        assert name in table
    default = next(line for line in table.splitlines() if line.startswith("fashion-mnist "))
    assert " * " in default and "1x28x28" in default and "32" in default
    listed = json.loads(ok(run(*connect, "models", "--json")))  # the connection flags before the command, too
    expected = vae.models()
    assert [m["name"] for m in listed["models"]] == expected.names and listed["default"] == expected.default
    assert listed["models"][0]["manifest"] == expected.models[0].manifest


def test_url_and_key_from_the_environment(vae: Client, server: Server):
    env = {"VAE_URL": server.url, "VAE_API_KEY": API_KEY}
    listed = json.loads(ok(run("models", "--json", env=env)))
    assert [m["name"] for m in listed["models"]] == vae.models().names
    stderr = failed(run("models", env={"VAE_URL": server.url}), 1)  # no key: 401
    assert "401" in stderr and "--api-key" in stderr
    stderr = failed(run("models", "--api-key", "wrong", env=env), 1)  # the flag wins over the environment
    assert "401" in stderr


def test_encode_json_equals_the_client(vae: Client, connect: list[str]):
    out = json.loads(ok(run("encode", EXAMPLE, TROUSER, "--json", *connect)))
    expected = vae.encode([EXAMPLE, TROUSER])
    assert (out["model"], out["latent_dim"]) == ("fashion-mnist", 32)
    assert [r["file"] for r in out["results"]] == [str(EXAMPLE), str(TROUSER)]
    for i, item in enumerate(out["results"]):
        assert np.array_equal(np.asarray(item["mean"], np.float32), expected.mean[i])
        assert np.array_equal(np.asarray(item["logvar"], np.float32), expected.logvar[i])
        assert "levels" not in item
    table = ok(run("encode", EXAMPLE, *connect))
    assert str(EXAMPLE) in table and f"{expected.mean[0, 0]:+.4f}" in table


def test_encode_of_a_two_level_model_gives_its_levels(vae: Client, connect: list[str]):
    out = json.loads(ok(run("encode", EXAMPLE, "--model", TWO_LEVEL, "--json", *connect)))
    expected = vae.encode(EXAMPLE, model=TWO_LEVEL)
    assert out["model"] == TWO_LEVEL and expected.levels is not None
    levels = out["results"][0]["levels"]
    assert [level["name"] for level in levels] == ["z1", "z2"]
    for level, want in zip(levels, expected.levels, strict=True):
        assert np.array_equal(np.asarray(level["mean"], np.float32), want.mean[0])


def test_loglik_of_a_folder_writes_every_file_ranked_with_the_clients_numbers(vae: Client, connect: list[str],
                                                                             folder: Path, tmp_path: Path):
    report = tmp_path / "out" / "ranking.csv"
    # --chunk 2: the command line calls the client per 2 images, which it splits by the service's 3 per request
    table = ok(run("loglik", folder, "--k", K, "--seed", 7, "--chunk", 2, "--csv", report, *connect))
    files = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    expected = vae.loglik(files, k=K, seed=7)
    rows = list(csv.DictReader(report.open()))
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, len(files) + 1)]
    assert sorted(r["file"] for r in rows) == [str(p) for p in files]  # every image, nothing else (no notes.txt)
    by_file = {str(p): i for i, p in enumerate(files)}
    for row in rows:
        i = by_file[row["file"]]
        assert float(row["log_likelihood"]) == expected.log_likelihood[i]
        assert float(row["stderr"]) == expected.stderr[i]
        assert float(row["bits_per_dim"]) == expected.bits_per_dim[i]
        assert float(row["elbo"]) == expected.elbo[i]
        assert float(row["effective_sample_size"]) == expected.effective_sample_size[i]
    values = [float(r["log_likelihood"]) for r in rows]
    assert values == sorted(values)  # lowest first: the most unusual image at the top
    assert "most unusual" in table and "seed 7" in table and f"wrote {report}" in table
    first = next(line for line in table.splitlines() if line.lstrip().startswith("1 "))
    assert first.endswith(rows[0]["file"])


def test_loglik_recursive_json_takes_subfolders_and_sends_a_bmp_as_png(vae: Client, connect: list[str],
                                                                       folder: Path):
    out = json.loads(ok(run("loglik", folder / "sub", folder / "e-square.png", "--recursive", "--json", "--k", K,
                            "--seed", 3, *connect)))
    names = [str(folder / "sub" / "f-trouser.bmp"), str(folder / "sub" / "g-boot.png"),
             str(folder / "e-square.png")]
    bmp = Image.open(folder / "sub" / "f-trouser.bmp")
    expected = vae.loglik([bmp, folder / "sub" / "g-boot.png", folder / "e-square.png"], k=K, seed=3)
    assert (out["k"], out["seed"], out["model"]) == (K, 3, "fashion-mnist")
    got = {r["file"]: r["log_likelihood"] for r in out["results"]}
    assert got == {name: float(expected.log_likelihood[i]) for i, name in enumerate(names)}
    assert [r["rank"] for r in out["results"]] == [1, 2, 3]
    # the same estimate whatever the order and chunking: one image alone gets the numbers it gets in the folder
    alone = json.loads(ok(run("loglik", folder / "sub" / "g-boot.png", "--json", "--k", K, "--seed", 3, *connect)))
    assert alone["results"][0]["log_likelihood"] == got[names[1]]


def test_sample_writes_a_grid_and_the_files(vae: Client, connect: list[str], tmp_path: Path):
    n = MAX_SAMPLES + 2  # past the service's per-request limit: the client splits it
    out = ok(run("sample", "--n", n, "--seed", 0, "--out", tmp_path / "grid.png", "--dir", tmp_path / "each",
                 *connect))
    expected = vae.sample(n, seed=0)
    with Image.open(tmp_path / "grid.png") as picture:
        assert picture.format == "PNG" and picture.size == (3 * 28 + 4 * 2, 3 * 28 + 4 * 2)  # 3 x 3, 2 px apart
        tile = np.asarray(picture)[2:30, 2:30]
    assert np.array_equal(tile, np.asarray(expected.to_pil()[0]))
    files = sorted((tmp_path / "each").iterdir())
    assert [f.name for f in files] == [f"sample-{i:04d}.png" for i in range(n)]
    assert [f.read_bytes() for f in files] == expected.png
    assert "seed 0" in out and "grid.png" in out
    # another model, columns and padding; as python -m vae_client
    ok(run("sample", "--n", 6, "--seed", 1, "--model", DIGITS, "--columns", 4, "--pad", 0, "--grid",
           tmp_path / "digits.png", *connect, module=True))
    with Image.open(tmp_path / "digits.png") as picture:
        assert picture.size == (4 * 8, 2 * 8)


def test_sample_json_and_table(vae: Client, connect: list[str]):
    out = json.loads(ok(run("sample", "--n", 2, "--seed", 4, "--model", DIGITS, "--json", *connect)))
    expected = vae.sample(2, seed=4, model=DIGITS)
    assert (out["model"], out["seed"], out["shape"], out["written"]) == (DIGITS, 4, [1, 8, 8], [])
    assert np.array_equal(np.asarray(out["arrays"], np.float32), expected.arrays)
    table = ok(run("sample", "--n", 2, "--seed", 4, "--model", DIGITS, *connect))
    assert "seed 4" in table and len(table.strip().splitlines()) == 2 + 2  # title, header, one row per image


def test_decode_reads_latent_vectors_from_json(vae: Client, connect: list[str], tmp_path: Path):
    z = vae.encode([EXAMPLE, TROUSER]).mean
    expected = vae.decode(z)
    source = tmp_path / "z.json"
    source.write_text(json.dumps({"z": z.tolist()}))
    out = json.loads(ok(run("decode", source, "--out", tmp_path / "images", "--json", *connect)))
    assert np.array_equal(np.asarray(out["arrays"], np.float32), expected.arrays)
    files = [Path(p) for p in out["written"]]
    assert [f.name for f in files] == ["image-0000.png", "image-0001.png"]
    assert [f.read_bytes() for f in files] == expected.png
    # a plain list of vectors, with a grid
    source.write_text(json.dumps(z.tolist()))
    ok(run("decode", source, "--grid", tmp_path / "grid.png", *connect))
    with Image.open(tmp_path / "grid.png") as picture:
        assert picture.size == (2 * 28 + 3 * 2, 28 + 2 * 2)
    # encode --json piped into decode: the reconstructions
    encoded = ok(run("encode", EXAMPLE, TROUSER, "--json", *connect))
    piped = json.loads(ok(run("decode", "-", "--json", *connect, stdin=encoded)))
    assert np.array_equal(np.asarray(piped["arrays"], np.float32), expected.arrays)


def test_a_service_error_exits_1_with_its_field_and_limit(connect: list[str], tmp_path: Path):
    stderr = failed(run("loglik", EXAMPLE, "--k", MAX_K + 1, *connect), 1)
    assert "422" in stderr and "query.k" in stderr and f"limit {MAX_K}" in stderr
    stderr = failed(run("sample", "--model", "no-such-model", *connect), 1)
    assert "404" in stderr and "query.model" in stderr and DIGITS in stderr
    source = tmp_path / "z.json"
    source.write_text(json.dumps([[0.0, 0.0, 0.0]]))  # the default model's latents have 32 values
    stderr = failed(run("decode", source, *connect), 1)
    assert "body.z[0]" in stderr and "limit 32" in stderr
    stderr = failed(run("models", "--url", "http://127.0.0.1:9", "--timeout", 2), 1)  # nothing listens there
    assert "127.0.0.1:9" in stderr and "--url" in stderr


def test_usage_errors_exit_2(connect: list[str], tmp_path: Path):
    assert "unrecognized arguments: --no-such-flag" in failed(run("encode", EXAMPLE, "--no-such-flag", *connect), 2)
    assert "required" in failed(run(*connect), 2)  # no command
    assert "not a positive whole number" in failed(run("sample", "--n", 0, *connect), 2)
    missing = tmp_path / "missing.png"
    assert f"{missing}: no such file or folder" in failed(run("loglik", missing, *connect), 2)
    (tmp_path / "empty").mkdir()
    assert "no image files" in failed(run("encode", tmp_path / "empty", *connect), 2)
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    assert "fake.png" in failed(run("encode", fake, *connect), 2)
    broken = tmp_path / "z.json"
    broken.write_text("{")
    assert "not JSON" in failed(run("decode", broken, *connect), 2)
    broken.write_text('{"z": [["a"]]}')
    assert "latent vectors" in failed(run("decode", broken, *connect), 2)
    assert "no such file" in failed(run("decode", tmp_path / "none.json", *connect), 2).lower()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal():
    screen = Terminal()
    with Progress("loglik", 5, stream=screen) as bar:
        bar.advance(3)
        bar.advance(2)
    lines = screen.getvalue().split("\r")
    assert "0/5 images" in lines[1] and "3/5 images" in lines[2] and "5/5 images 100.0%" in lines[3]
    assert screen.getvalue().endswith("\n")
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):  # not a terminal; --quiet
        with Progress("loglik", 5, stream=stream, enabled=enabled) as bar:
            bar.advance(5)
        assert stream.getvalue() == ""
