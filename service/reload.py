"""Reloading the model directory while serving: POST /admin/reload (service/admin.py), or a watcher that polls
it every `reload_interval_s` seconds.

    reloader = Reloader(core)
    outcome = await reloader.reload()        # Outcome(loaded, unchanged, removed, failed)

A new registry is built on a worker thread from the old one: a folder whose fingerprint (service/registry.py
`fingerprint`: the manifest's content and every file's size and time) is unchanged keeps its model, the same
object; a new or changed folder loads; a folder that is gone stops serving. A changed folder that fails to load
leaves its old model serving, and the failure is listed under `skipped`. The registry is then swapped in at
once (`Core.swap`): requests that already hold a model finish on it; only the old models that are no longer
served are closed. One reload runs at a time. No HTTP here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from service.core import Core
from service.errors import Unavailable
from service.metrics import Metrics
from service.model import LoadOptions, ServedModel
from service.offload import Workers
from service.registry import (
    FolderError,
    Registry,
    add_model,
    cpu_fallback,
    default_model,
    fingerprint,
    fingerprints,
    load_folder,
    load_options,
    model_folders,
)
from service.settings import Settings

log = logging.getLogger("service.reload")


@dataclass
class Outcome:
    """What a reload did, by folder name."""

    loaded: list[str] = field(default_factory=list)  # new or changed, now serving their new model
    unchanged: list[str] = field(default_factory=list)  # serving the same model object as before
    removed: list[str] = field(default_factory=list)  # gone from the directory: their model no longer serves
    failed: dict[str, str] = field(default_factory=dict)  # folder -> why (an old model of it keeps serving)

    def counts(self) -> dict[str, int]:
        """Folders by result: the `result` label of vae_model_reloads_total."""
        return {"loaded": len(self.loaded), "unchanged": len(self.unchanged), "removed": len(self.removed),
                "failed": len(self.failed)}


def rebuild(old: Registry, settings: Settings, metrics: Metrics, workers: Workers) -> tuple[Registry, Outcome]:
    """The registry the model directory describes now, reusing the old one's unchanged models. Blocks: loading
    runs onnxruntime, so call it on a worker thread."""
    if not settings.model_dir.is_dir():  # an unmounted volume must not unload every model
        raise Unavailable(None, "the model directory is not there; nothing was reloaded")
    options = load_options(settings, metrics, workers)
    served = {model.folder.name: model for model in old.models.values()}
    new, outcome = Registry(), Outcome()
    for folder in model_folders(settings.model_dir):
        name = folder.name
        new.fingerprints[name] = fingerprint(folder)
        before = served.get(name)
        result, model = "unchanged", before
        if before is None or new.fingerprints[name] != old.fingerprints.get(name) or name in old.skipped:
            try:  # new, changed, or failed last time: (re)load
                result, model = "loaded", load_changed(folder, options, settings)
            except FolderError as exc:
                result, new.skipped[name] = "failed", str(exc)  # `before`, if any, keeps serving
        if model is not None and not add_model(new, folder, model):
            result = "failed"
            if model is not before:
                model.close()
        if result == "failed":
            outcome.failed[name] = new.skipped[name]
        else:
            (outcome.loaded if result == "loaded" else outcome.unchanged).append(name)
    outcome.removed = sorted(name for name in served if name not in new.fingerprints)
    new.default = default_model(new, settings)
    if settings.default_model is not None and new.default != settings.default_model:
        log.warning("VAE_DEFAULT_MODEL=%r no longer loads: the default model is now %r", settings.default_model,
                    new.default)
    return new, outcome


def load_changed(folder: Path, options: LoadOptions, settings: Settings) -> ServedModel:
    """load_folder, a silent fall-back to the CPU being a failure of this folder (at start-up it stops the
    service; while serving, the old model is better kept)."""
    model = load_folder(folder, options)
    fell_back = cpu_fallback(model, options, settings)
    if fell_back:
        model.close()
        raise FolderError(fell_back)
    return model


def retired(old: Registry, new: Registry) -> list[ServedModel]:
    """The old registry's models the new one no longer serves (replaced or removed), by identity."""
    kept = {id(model) for model in new.models.values()}
    return [model for model in old.models.values() if id(model) not in kept]


class Reloader:
    """Reloads the core's model directory, one reload at a time: a second waits for the first, then finds the
    directory as the first left it (and loads nothing twice)."""

    def __init__(self, core: Core):
        self.core = core
        self.lock = asyncio.Lock()

    async def reload(self) -> Outcome:
        async with self.lock:
            core = self.core
            old = core.ready()  # Unavailable (503) while the models are still loading
            new, outcome = await core.workers.run(rebuild, old, core.settings, core.metrics, core.workers)
            core.swap(new)
            for model in retired(old, new):
                model.close()  # requests that hold it finish unbatched (service/batching.py)
            for result, folders in outcome.counts().items():
                core.metrics.labeled(core.metrics.reloads, result).inc(folders)
            log.info("reloaded models: loaded %s, unchanged %s, removed %s, failed %s", outcome.loaded,
                     outcome.unchanged, outcome.removed, sorted(outcome.failed))
            return outcome

    async def watch(self, interval_s: float) -> None:
        """Every `interval_s` seconds, reload if any folder's fingerprint differs from the served registry's;
        returns at once for 0 (no watcher). Runs until cancelled (the app's lifespan)."""
        if interval_s <= 0:
            return
        while True:
            await asyncio.sleep(interval_s)
            registry = self.core.registry
            if registry is None or self.core.startup_error is not None:
                continue  # still loading, or not serving at all
            try:
                if await self.core.workers.run(fingerprints, self.core.settings.model_dir) != registry.fingerprints:
                    await self.reload()
            except Exception:  # noqa: BLE001 - the watcher outlives one bad poll (a directory in flux)
                log.exception("model directory watch: reload failed")
