"""The loaded models: every folder under the model directory, loaded once at start-up by `load_model`.

A broken folder is logged and listed under `skipped`; the others serve. Configuration errors (an explicit
execution provider this onnxruntime lacks, CUDA asked for but not used, an unknown VAE_DEFAULT_MODEL)
raise StartupError: the service must not start as configured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import onnxruntime as ort

from service.graphs import BatchPolicy
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


@dataclass
class Registry:
    models: dict[str, ServedModel] = field(default_factory=dict)
    default: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # folder name -> why

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
    if not settings.model_dir.is_dir():
        raise StartupError(f"model directory {settings.model_dir} does not exist (VAE_MODEL_DIR / --model-dir)")


def load_options(settings: Settings, metrics: Metrics, workers: Workers) -> LoadOptions:
    return LoadOptions(
        providers=resolve_providers(settings),
        session=session_options(settings.intra_op_threads, settings.inter_op_threads, settings.ort_spinning),
        batching=BatchPolicy(settings.batching, settings.batch_max_rows, settings.batch_max_delay_ms / 1000),
        metrics=metrics, workers=workers)


def load_registry(settings: Settings, metrics: Metrics, workers: Workers) -> Registry:
    """Load every model folder; raises StartupError only for configuration errors."""
    check_configuration(settings)
    options = load_options(settings, metrics, workers)
    registry = Registry()
    for folder in sorted(p for p in settings.model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            model = load_model(folder, options)
        except Exception as exc:  # noqa: BLE001 - a broken folder is reported and skipped, whatever broke
            registry.skipped[folder.name] = str(exc)
            log.error("skipped model folder %s: %s", folder, exc)
            continue
        fell_back = [g.role for g in model.graphs if CUDA not in g.providers]
        if CUDA in options.providers and settings.provider_list() is not None and fell_back:
            # onnxruntime falls back to CPU silently when CUDA fails
            raise StartupError(f"{folder}: CUDA was asked for but the {fell_back} sessions run on {model.providers}")
        if model.name in registry.models:
            registry.skipped[folder.name] = f"duplicate model name {model.name!r}"
            log.error("skipped model folder %s: duplicate model name %r", folder, model.name)
            model.close()
            continue
        registry.models[model.name] = model
        log.info("loaded model %s from %s on %s", model.name, folder, model.providers)
    if settings.default_model is not None:
        if settings.default_model not in registry.models:
            raise StartupError(f"VAE_DEFAULT_MODEL={settings.default_model!r} is not among the loaded models "
                               f"{sorted(registry.models)}")
        registry.default = settings.default_model
    elif registry.models:
        registry.default = DEFAULT_MODEL_NAME if DEFAULT_MODEL_NAME in registry.models else min(registry.models)
    return registry
