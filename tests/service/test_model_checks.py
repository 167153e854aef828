"""Models that cannot lie: a folder whose manifest disagrees with its graphs (image size, channels, latent sizes,
levels) is refused at load with a reason naming the graph file, the tensor and both sides, and GET /models lists
it under `skipped` by folder name with no absolute path, while the good folders serve."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.manifest import ManifestError, sha256_file
from service.metrics import Metrics
from service.model import GraphMismatch, load_model
from service.offload import Workers
from service.registry import load_options
from tests.service.conftest import DIGITS, TWO_LEVEL, make_settings, wait_ready

Manifest = dict[str, Any]


def rewrite(folder: Path, edit: Callable[[Manifest], None]) -> None:
    """Edit the folder's manifest.json in place (it lists no hash of itself: the files' sha256s stay valid)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def image_says(**sizes: int) -> Callable[[Manifest], None]:
    """A consistent lie: the image spec and both graph specs all claim the other image size."""
    def edit(m: Manifest) -> None:
        m["image"].update(sizes)
        shape = ["N", m["image"]["channels"], m["image"]["height"], m["image"]["width"]]
        m["encoder"]["inputs"]["x"] = m["decoder"]["outputs"]["mean"] = shape
    return edit


def latent_says(d: int) -> Callable[[Manifest], None]:
    def edit(m: Manifest) -> None:
        m["latent_dim"] = d
        m["encoder"]["outputs"].update(mu=["N", d], logvar=["N", d])
        m["decoder"]["inputs"]["z"] = ["N", d]
    return edit


def top_level_says(d2: int) -> Callable[[Manifest], None]:
    def edit(m: Manifest) -> None:
        m["hierarchy"]["latent_dims"][1] = d2
        m["encoder"]["outputs"].update(mu2=["N", d2], logvar2=["N", d2])
        m["hierarchy"]["prior"]["inputs"]["z2"] = ["N", d2]
    return edit


def flat(m: Manifest) -> None:
    """A two-level model's manifest that claims one level."""
    del m["hierarchy"], m["encoder"]["outputs"]["mu2"], m["encoder"]["outputs"]["logvar2"]


def load(folder: Path):
    settings = make_settings(folder.parent)
    return load_model(folder, load_options(settings, Metrics(), Workers(1)))


# The digits models take 1x8x8 images; digits-tiny has 4 latents, digits-two-level [4, 3].
LIES = {
    "height": (DIGITS, image_says(height=9), r"^encoder\.onnx: input 'x' is \[N, 1, 8, 8\] in the graph, the "
               r"manifest says \[N, 1, 9, 8\] \(image 1x9x8\)$"),
    "width": (DIGITS, image_says(width=28), r"input 'x' is \[N, 1, 8, 8\] in the graph, the manifest says "
              r"\[N, 1, 8, 28\] \(image 1x8x28\)"),
    "channels": (DIGITS, image_says(channels=3), r"input 'x' is \[N, 1, 8, 8\] in the graph, the manifest says "
                 r"\[N, 3, 8, 8\]"),
    # the exported encoder leaves its output sizes symbolic: the run at load settles them
    "latent size": (DIGITS, latent_says(5), r"^encoder\.onnx: output 'mu' is .*4\] .*the manifest says "
                    r"(float32 )?\[N, 5\] \(latent size 5 of z1\)$"),
    "top latent size": (TWO_LEVEL, top_level_says(2), r"^encoder\.onnx: output 'mu2' is .*3\] .*the manifest says "
                        r"(float32 )?\[N, 2\] \(latent size 2 of z2\)$"),
    "levels": (TWO_LEVEL, flat, r"^encoder\.onnx: the graph has outputs \['mu', 'logvar', 'mu2', 'logvar2'\], "
               r"the manifest lists \['mu', 'logvar'\] and its latent levels need 2$"),
    "spec against image": (DIGITS, lambda m: m["image"].update(height=9),
                           r"^encoder\.onnx: input 'x' is listed as \[N, 1, 8, 8\] in the manifest's graph spec, "
                           r"but its image 1x9x8 makes it \[N, 1, 9, 8\]$"),
    "decoder output": (DIGITS, lambda m: m["decoder"]["outputs"].update(mean=["N", 1, 8, 9]),
                       r"^decoder\.onnx: output 'mean' is listed as \[N, 1, 8, 9\] in the manifest's graph spec"),
}


@pytest.mark.parametrize("lie", LIES)
def test_a_manifest_that_lies_about_its_graphs_is_refused_at_load(model_dir, tmp_path, lie):
    source, edit, reason = LIES[lie]
    folder = tmp_path / "liar"
    shutil.copytree(model_dir / source, folder)
    load(folder).close()  # the honest folder loads
    rewrite(folder, edit)
    with pytest.raises(GraphMismatch, match=reason):
        load(folder)


def test_levels_that_contradict_the_latent_size_are_an_invalid_manifest(model_dir, tmp_path):
    folder = tmp_path / "liar"
    shutil.copytree(model_dir / TWO_LEVEL, folder)
    rewrite(folder, lambda m: m["hierarchy"].update(latent_dims=[5, 3]))
    with pytest.raises(ManifestError, match=r"(?s)^liar/manifest.json: invalid manifest: .*latent_dims\[0\] \(5\) must "
                                            r"equal latent_dim \(4\)"):
        load(folder)


def test_lying_and_corrupt_folders_are_skipped_by_name_with_no_path_and_the_others_serve(model_dir, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(model_dir / DIGITS, root / DIGITS)
    shutil.copytree(model_dir / TWO_LEVEL, root / TWO_LEVEL)
    shutil.copytree(model_dir / DIGITS, root / "liar")
    rewrite(root / "liar", lambda m: (m.update(name="liar"), latent_says(5)(m)))
    shutil.copytree(model_dir / DIGITS, root / "corrupt")
    (root / "corrupt" / "encoder.onnx").write_bytes(b"not a protobuf")

    def rehash(m: Manifest) -> None:  # a valid hash: onnxruntime, not the sha256 check, must refuse the file
        m["name"], m["files"]["encoder.onnx"]["sha256"] = "corrupt", sha256_file(root / "corrupt" / "encoder.onnx")
        m["files"]["encoder.onnx"]["bytes"] = len(b"not a protobuf")
    rewrite(root / "corrupt", rehash)
    shutil.copytree(model_dir / DIGITS, root / "tampered")
    (root / "tampered" / "decoder.onnx").write_bytes(b"garbage")  # fails its sha256
    with TestClient(create_app(make_settings(root))) as c:
        assert wait_ready(c)["status"] == "ready"
        r = c.get("/models")
        assert r.status_code == 200 and str(tmp_path) not in r.text
        models = r.json()
        assert [m["name"] for m in models["models"]] == [DIGITS, TWO_LEVEL]
        skipped = models["skipped"]
        assert sorted(skipped) == ["corrupt", "liar", "tampered"]
        assert "encoder.onnx: output 'mu'" in skipped["liar"] and "latent size 5 of z1" in skipped["liar"]
        # onnxruntime names the file it could not parse by its absolute path: the folder's name replaces it
        assert "INVALID_PROTOBUF" in skipped["corrupt"] and "corrupt/encoder.onnx" in skipped["corrupt"]
        assert skipped["tampered"].startswith("tampered: decoder.onnx sha256 ")
        assert c.get("/models/liar").status_code == 404
        assert c.get("/sample", params={"model": "liar"}).status_code == 404
        for name in (DIGITS, TWO_LEVEL):
            assert c.get("/sample", params={"model": name, "n": 2, "seed": 0}).status_code == 200
