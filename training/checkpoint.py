"""Checkpoints: everything that rebuilds a model (its config and data shape) and resumes its run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from training.config import RunConfig
from training.data import ImageData
from training.latent import LatentModel
from training.models import build_model


@dataclass
class DataInfo:
    """What a model needs to know of its data: shape, pixel levels and mode, classes, sizes."""

    dataset: str
    shape: tuple[int, int, int]  # (C, H, W)
    levels: int
    pixel_mode: str  # dequantize | plain | binarize (training.data.to_unit)
    class_names: tuple[str, ...]
    num_train: int
    num_test: int

    @classmethod
    def from_data(cls, train: ImageData, test: ImageData, mode: str) -> DataInfo:
        return cls(train.name, train.shape, train.levels, mode, train.class_names, len(train), len(test))


@dataclass
class Checkpoint:
    config: dict[str, Any]
    data: DataInfo
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    epoch: int
    step: int
    skipped_steps: int
    history: list[dict[str, Any]]
    torch_rng: torch.Tensor
    data_rng: torch.Tensor

    @property
    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config)

    def build_model(self) -> LatentModel:
        model = build_model(self.run_config.model, self.data.shape, self.data.levels)
        model.load_state_dict(self.model_state)
        return model.eval()


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Written to a temporary file then renamed: an interrupted save never leaves a broken checkpoint."""
    payload = asdict(ckpt)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    data = payload.pop("data")
    data["shape"] = tuple(data["shape"])
    data["class_names"] = tuple(data["class_names"])
    return Checkpoint(data=DataInfo(**data), **payload)
