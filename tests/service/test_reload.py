"""Reloading model folders on the real server (`python -m service` over HTTP): POST /admin/reload adds new
folders, reloads changed ones, keeps a broken one's old model serving and reports it, stops serving removed ones;
the watcher does the same on its own; and no request fails while the models it uses are replaced."""

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import DIGITS, TWO_LEVEL, running_server


def rewrite(folder: Path, **fields: Any) -> None:
    """Change top-level manifest fields (the manifest lists no hash of itself: the files' sha256s stay valid)."""
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def models_dir(model_dir: Path, tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "models"
    for name in names:
        shutil.copytree(model_dir / name, root / name)
    return root


def reloads(http: httpx.Client) -> dict[str, float]:
    """vae_model_reloads_total by result."""
    families = text_string_to_metric_families(http.get("/metrics").text)
    return {s.labels["result"]: s.value for f in families if f.name == "vae_model_reloads" for s in f.samples
            if s.name.endswith("_total")}


def test_reload_adds_changes_keeps_broken_and_removes_folders(model_dir, tmp_path):
    root = models_dir(model_dir, tmp_path, DIGITS)
    with running_server(root) as address, httpx.Client(base_url=f"http://{address}", timeout=30) as http:
        def reload() -> dict[str, Any]:
            r = http.post("/admin/reload")
            assert r.status_code == 200 and str(tmp_path) not in r.text
            return r.json()

        def sample(model: str) -> int:
            return http.get("/sample", params={"model": model, "n": 2, "seed": 0}).status_code

        assert reload() == {"loaded": [], "unchanged": [DIGITS], "removed": [], "failed": {}}

        shutil.copytree(model_dir / TWO_LEVEL, root / TWO_LEVEL)
        assert sample(TWO_LEVEL) == 404  # nothing changes until the reload
        assert reload() == {"loaded": [TWO_LEVEL], "unchanged": [DIGITS], "removed": [], "failed": {}}
        assert sample(TWO_LEVEL) == 200

        rewrite(root / TWO_LEVEL, description="second export")
        assert reload() == {"loaded": [TWO_LEVEL], "unchanged": [DIGITS], "removed": [], "failed": {}}
        assert http.get(f"/models/{TWO_LEVEL}").json()["manifest"]["description"] == "second export"

        rewrite(root / TWO_LEVEL, description="broken export", image={"channels": 1, "height": 9, "width": 8,
                                                                      "levels": 17, "pixel_mode": "dequantize"})
        outcome = reload()
        assert outcome["loaded"] == [] and outcome["unchanged"] == [DIGITS] and list(outcome["failed"]) == [TWO_LEVEL]
        assert "encoder.onnx: input 'x'" in outcome["failed"][TWO_LEVEL]
        assert sample(TWO_LEVEL) == 200  # the old model serves on
        models = http.get("/models")
        assert str(tmp_path) not in models.text
        assert models.json()["skipped"] == outcome["failed"]
        assert http.get(f"/models/{TWO_LEVEL}").json()["manifest"]["description"] == "second export"

        shutil.rmtree(root / TWO_LEVEL)
        assert reload() == {"loaded": [], "unchanged": [DIGITS], "removed": [TWO_LEVEL], "failed": {}}
        assert sample(TWO_LEVEL) == 404 and sample(DIGITS) == 200
        assert http.get("/models").json()["skipped"] == {}
        assert reloads(http) == {"loaded": 2, "unchanged": 5, "removed": 1, "failed": 1}


def test_the_watcher_reloads_a_changed_directory(model_dir, tmp_path):
    root = models_dir(model_dir, tmp_path, DIGITS)
    with running_server(root, VAE_RELOAD_INTERVAL_S="0.2") as address, \
            httpx.Client(base_url=f"http://{address}", timeout=30) as http:
        time.sleep(0.5)  # a few polls of an unchanged directory: no reload
        assert reloads(http) == {}
        shutil.copytree(model_dir / TWO_LEVEL, root / TWO_LEVEL)
        deadline = time.monotonic() + 15
        while TWO_LEVEL not in http.get("/readyz").json()["models"]:
            assert time.monotonic() < deadline, "the watcher did not load the new folder"
            time.sleep(0.1)
        assert http.get("/sample", params={"model": TWO_LEVEL, "n": 2}).status_code == 200
        assert reloads(http) == {"loaded": 1, "unchanged": 1, "removed": 0, "failed": 0}


def test_no_request_fails_while_its_model_is_replaced(model_dir, tmp_path):
    root = models_dir(model_dir, tmp_path, DIGITS, TWO_LEVEL)
    image = [[[0.5] * 8] * 8]  # one 1x8x8 digits image
    calls: list[Callable[[httpx.Client], httpx.Response]] = [
        lambda http: http.post("/encode", params={"model": DIGITS}, json={"arrays": [image, image]}),
        lambda http: http.get("/sample", params={"model": DIGITS, "n": 4}),
        lambda http: http.get("/sample", params={"model": TWO_LEVEL, "n": 4}),  # runs the prior graph too
        lambda http: http.post("/encode", params={"model": TWO_LEVEL}, json={"arrays": [image]}),
    ]
    with running_server(root) as address:
        stop, answers, failures = threading.Event(), [], []

        def hammer(call: Callable[[httpx.Client], httpx.Response]) -> None:
            with httpx.Client(base_url=f"http://{address}", timeout=10) as http:
                while not stop.is_set():
                    try:
                        answers.append(call(http).status_code)
                    except httpx.HTTPError as exc:  # a request that hangs on a closed model times out here
                        failures.append(repr(exc))

        threads = [threading.Thread(target=hammer, args=(call,)) for call in calls]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=f"http://{address}", timeout=30) as http:
            for i in range(4):
                time.sleep(0.3)
                for name in (DIGITS, TWO_LEVEL):  # both change: every reload replaces (and closes) both models
                    rewrite(root / name, description=f"export {i}")
                before = len(answers)
                r = http.post("/admin/reload")
                assert r.status_code == 200 and r.json()["loaded"] == [DIGITS, TWO_LEVEL]
            time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert len(answers) > before > 0 and set(answers) == {200}
