"""The loaded models: every folder under the model directory, loaded at start-up by `load_model` (and again,
folder by folder, by service/reload.py).

A broken folder is logged and listed under `skipped`, by its name, with a reason that names no absolute path
(it reaches GET /models); the others serve. Configuration errors (an explicit execution provider this
onnxruntime lacks, CUDA asked for but not used, an unknown VAE_DEFAULT_MODEL) raise StartupError: the service
must not start as configured.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from service.graphs import BatchPolicy
from service.manifest import MANIFEST_FILE
from service.metrics import Metrics
from service.model import LoadOptions, ServedModel, load_model, session_options
from service.offload import Workers
from service.settings import Settings

log = logging.getLogger("service.registry")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_MODEL_NAME = "fashion-mnist"


class StartupError(RuntimeError):
    """The service cannot start as configured (e.g. CUDA asked for but unavailable)."""


class FolderError(Exception):
    """A model folder that cannot be served, with a reason fit for a response (no absolute path)."""


@dataclass
class Registry:
    models: dict[str, ServedModel] = field(default_factory=dict)
    default: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # folder name -> why
    # folder name -> its fingerprint when this registry loaded it (or failed to): what service/reload.py compares
    fingerprints: dict[str, str] = field(default_factory=dict)

    def get(self, name: str | None) -> ServedModel | None:
        return self.models.get(name or self.default or "")

    def close(self) -> None:
        for model in self.models.values():
            model.close()


def resolve_providers(settings: Settings) -> list[str]:
    """The provider list sessions are created with; explicit requests that cannot be met raise."""
    available = ort.get_available_providers()
    wanted = settings.provider_list()
    if wanted is None:
        return [CUDA, CPU] if CUDA in available else [CPU]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise StartupError(f"VAE_PROVIDERS asks for {missing}, but this onnxruntime offers only {available}"
                           + (" (install onnxruntime-gpu, not onnxruntime, for CUDA)" if CUDA in missing else ""))
    return wanted


def check_configuration(settings: Settings) -> None:
    """The checks that need no model: providers on offer, the model directory there."""
    resolve_providers(settings)
    if not settings.model_dir.is_dir():  # stops start-up before any response: the operator's own path is useful
        raise StartupError(f"model directory {settings.model_dir} does not exist (VAE_MODEL_DIR / --model-dir)")


def load_options(settings: Settings, metrics: Metrics, workers: Workers) -> LoadOptions:
    return LoadOptions(
        providers=resolve_providers(settings),
        session=session_options(settings.intra_op_threads, settings.inter_op_threads, settings.ort_spinning),
        batching=BatchPolicy(settings.batching, settings.batch_max_rows, settings.batch_max_delay_ms / 1000,
                             settings.max_queued_rows, settings.retry_after_s),
        metrics=metrics, workers=workers)


def load_registry(settings: Settings, metrics: Metrics, workers: Workers) -> Registry:
    """Load every model folder; raises StartupError only for configuration errors."""
    check_configuration(settings)
    options = load_options(settings, metrics, workers)
    registry = Registry()
    for folder in model_folders(settings.model_dir):
        registry.fingerprints[folder.name] = fingerprint(folder)
        try:
            model = load_folder(folder, options)
        except FolderError as exc:
            registry.skipped[folder.name] = str(exc)
            continue
        fell_back = cpu_fallback(model, options, settings)
        if fell_back:
            raise StartupError(f"{folder.name}: {fell_back}")
        if not add_model(registry, folder, model):
            model.close()
            continue
        log.info("loaded model %s from %s on %s", model.name, folder, model.providers)
    if settings.default_model is not None and settings.default_model not in registry.models:
        raise StartupError(f"VAE_DEFAULT_MODEL={settings.default_model!r} is not among the loaded models "
                           f"{sorted(registry.models)}")
    registry.default = default_model(registry, settings)
    return registry


def model_folders(model_dir: Path) -> list[Path]:
    """The model folders, by name: every directory under the model directory but hidden ones."""
    return sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_folder(folder: Path, options: LoadOptions) -> ServedModel:
    """load_model, its failure a FolderError whose reason names files relative to the model directory: the
    reason reaches responses, and onnxruntime's own errors name the absolute path of the file they could not read."""
    try:
        return load_model(folder, options)
    except Exception as exc:  # noqa: BLE001 - a broken folder is reported and skipped, whatever broke
        log.error("skipped model folder %s: %s", folder, exc)
        reason = str(exc)
        for path in sorted({str(folder.resolve()), str(folder.absolute()), str(folder)}, key=len, reverse=True):
            reason = reason.replace(path, folder.name)  # longest first: a relative path is the tail of an absolute one
        raise FolderError(reason) from exc


def cpu_fallback(model: ServedModel, options: LoadOptions, settings: Settings) -> str | None:
    """Why the model does not run as asked, when CUDA was asked for explicitly and onnxruntime fell back to the CPU
    (it does so silently when CUDA fails); None when it runs as asked."""
    fell_back = [g.role for g in model.graphs if CUDA not in g.providers]
    if CUDA in options.providers and settings.provider_list() is not None and fell_back:
        return f"CUDA was asked for but the {fell_back} sessions run on {model.providers}"
    return None


def add_model(registry: Registry, folder: Path, model: ServedModel) -> bool:
    """Serve the model under its name; False (and listed under skipped) when another folder already has it."""
    if model.name in registry.models:
        registry.skipped[folder.name] = f"duplicate model name {model.name!r}"
        log.error("skipped model folder %s: duplicate model name %r", folder, model.name)
        return False
    registry.models[model.name] = model
    return True


def default_model(registry: Registry, settings: Settings) -> str | None:
    """VAE_DEFAULT_MODEL when loaded; else "fashion-mnist" if loaded, else the first by name."""
    if settings.default_model in registry.models:
        return settings.default_model
    if not registry.models:
        return None
    return DEFAULT_MODEL_NAME if DEFAULT_MODEL_NAME in registry.models else min(registry.models)


def fingerprint(folder: Path) -> str:
    """What changes when the folder's model changes: the manifest's content (it lists every file's sha256, so
    any re-export changes it, even one that keeps file sizes and times, as `cp -p` does) and every file's name,
    size and modification time (a file replaced behind the manifest's back), without reading the ONNX files,
    which a polling watcher would otherwise read in full every interval. "" while the folder changes under us."""
    digest = hashlib.sha256()
    try:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
                if path.name == MANIFEST_FILE:
                    digest.update(path.read_bytes())
    except OSError:
        return ""
    return digest.hexdigest()


def fingerprints(model_dir: Path) -> dict[str, str]:
    """Every model folder's fingerprint, by folder name."""
    return {folder.name: fingerprint(folder) for folder in model_folders(model_dir)}
