"""A small Fashion-MNIST classifier that the project trains itself (no downloaded weights): its penultimate
layer is the feature space of the sample-quality measures (training/quality.py), and its confidence says whether
an image looks like one garment. benchmarks/sample_quality.py trains it once (`load_or_train`, into
runs/classifier/) and reports its test accuracy with every figure.

Two 3x3 conv stages (32 and 64 channels, SiLU, 2x2 max-pool) -> 128 features (SiLU) -> 10 logits, Adam, images
as x = k / 255. The saved file holds the weights, the test accuracy, the epochs and the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.config import DataConfig
from training.data import load_dataset, to_unit
from training.image_data import ImageData

FEATURES = 128


class Classifier(nn.Module):
    def __init__(self, classes: int = 10, channels: int = 1, side: int = 28):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (side // 4) ** 2, FEATURES), nn.SiLU())
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N, 128): the space FID and precision/recall are measured in."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, classes) logits


@dataclass
class Trained:
    model: Classifier
    test_accuracy: float


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, 128) and class probabilities (N, classes) of images (N, C, H, W) in [0, 1]."""
    model.eval()
    features, probabilities = [], []
    for start in range(0, len(images), batch):
        f = model.features(images[start : start + batch].float())
        features.append(f)
        probabilities.append(torch.softmax(model.head(f), 1))
    return torch.cat(features), torch.cat(probabilities)


def accuracy(model: Classifier, data: ImageData) -> float:
    _, probabilities = predict(model, to_unit(data.images, data.levels, "plain"))
    return float((probabilities.argmax(1) == data.labels).float().mean())


def train_classifier(epochs: int = 4, seed: int = 0, batch_size: int = 128, lr: float = 2e-3,
                     data: DataConfig | None = None) -> Trained:
    """Adam on the cross-entropy of the training split, a cosine learning-rate decay, fixed seeds."""
    cfg = data or DataConfig(dataset="fashion-mnist")
    train, test = load_dataset(cfg, "train"), load_dataset(cfg, "test")
    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed + 1)
    c, side, _ = train.shape
    model = Classifier(len(train.class_names), c, side)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(train) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    x_all = to_unit(train.images, train.levels, "plain")
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=order_gen)
        for start in range(0, len(train), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(x_all[idx]), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return Trained(model.eval(), accuracy(model, test))


def load_or_train(folder: Path, epochs: int = 4, seed: int = 0) -> Trained:
    """The classifier saved in folder/classifier.pt, trained and saved there first if absent."""
    path = folder / "classifier.pt"
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = Classifier()
        model.load_state_dict(saved["state"])
        return Trained(model.eval(), float(saved["test_accuracy"]))
    trained = train_classifier(epochs, seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state": trained.model.state_dict(), "test_accuracy": trained.test_accuracy,
                "epochs": epochs, "seed": seed}, path)
    return trained
