"""Typed configuration for a training run: data, model and optimisation, each a dataclass.

A run is described by one TOML file (see configs/) plus command-line overrides of the form
`--set section.key=value`. Unknown sections or keys are errors, so a typo never passes silently.
The full config is stored in every checkpoint and in the exported manifest, so a model can be rebuilt.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DatasetName = Literal["fashion-mnist", "digits", "folder", "shapes"]
# gaussian: the chapter's spherical Norm[f[z], sigma^2 I]; bernoulli: binarized images; pixel-gaussian: a mean and
# a log-variance per pixel; logistic / logistic-mixture: discretized logistic(s) over the image's L levels.
LikelihoodName = Literal["gaussian", "bernoulli", "pixel-gaussian", "logistic", "logistic-mixture"]
Arch = Literal["mlp", "conv", "resnet"]


@dataclass
class DataConfig:
    dataset: DatasetName = "fashion-mnist"
    # Where the IDX files (fashion-mnist) or the class sub-folders of images (folder) are.
    path: str | None = None
    # Image size and channels for a folder of the user's own images (others have fixed shapes).
    channels: int = 1
    height: int = 28
    width: int = 28
    # Uniform dequantization: x = (k + u) / levels, u ~ U[0, 1); otherwise x = k / (levels - 1).
    dequantize: bool = True
    # Keep only the first N training / test images (0 = all): small runs and tests.
    limit_train: int = 0
    limit_test: int = 0
    # Share held out as the test split where the data has no split of its own (digits, a folder
    # without train/ and test/ sub-folders); the hold-out is a fixed permutation (seed 0).
    test_fraction: float = 0.2
    # Generated binary shapes with known factors (training/shapes.py): the split sizes, drawn without
    # replacement from the 73,728 factor combinations and disjoint; the image side in pixels; the seed
    # that fixes which combinations each split holds.
    shapes_train: int = 20000
    shapes_test: int = 2000
    shapes_size: int = 32
    shapes_seed: int = 0


@dataclass
class ModelConfig:
    arch: Arch = "mlp"
    latent_dim: int = 32
    # MLP hidden widths, encoder order (the decoder mirrors them). () gives a linear encoder/decoder.
    hidden: tuple[int, ...] = (512, 256)
    # Conv channels per stride-2 stage; H and W must be divisible by 2 ** len(channels). "resnet" adds
    # res_blocks residual blocks (3x3 conv, SiLU, 3x3 conv, plus the input) after each stage.
    conv_channels: tuple[int, ...] = (32, 64)
    res_blocks: int = 2
    likelihood: LikelihoodName = "gaussian"
    # Gaussian likelihood Norm[f[z], sigma^2 I]: sigma is the initial value when learned.
    sigma: float = 0.1
    learn_sigma: bool = True
    # Gaussian mean f[z] = sigmoid(h) keeps it in (0, 1) like the pixels; "identity" leaves it
    # unconstrained (the chapter's f[z, phi]; with hidden=() the linear-Gaussian model). Bernoulli: sigmoid.
    mean_activation: Literal["sigmoid", "identity"] = "sigmoid"
    # Lower bound on a learned sigma: keeps the density finite on near-constant pixels.
    sigma_min: float = 1e-3
    # pixel-gaussian: the per-pixel log-variance is floored softly at this value (sigma >= e^(floor / 2)), so the
    # density of a constant background pixel stays finite.
    pixel_logvar_min: float = -9.0
    # logistic(s): the per-pixel log-scale is floored at this value (in units of [0, 1]); a bin of 256 levels is
    # 1/255 wide, e^-8 about a tenth of it.
    log_scale_min: float = -8.0
    # logistic-mixture: logistics per pixel.
    mixture_components: int = 5
    # "two-level": z2 -> z1 -> x with a learned conditional prior Pr(z1|z2) (training/hierarchical.py);
    # latent_dim is z1's size (what the decoder reads), latent_dim2 z2's, prior_hidden the prior net's widths.
    hierarchy: Literal["flat", "two-level"] = "flat"
    latent_dim2: int = 8
    prior_hidden: tuple[int, ...] = (256,)
    # Encoder log-variance is clamped to this range so exp() never over/underflows.
    logvar_min: float = -12.0
    logvar_max: float = 8.0


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    # Cosine decay from lr to lr * lr_final_fraction over the run, after a linear warm-up.
    lr_warmup_steps: int = 200
    lr_final_fraction: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 100.0
    # beta = 1 is the plain VAE; beta > 1 is the beta-VAE.
    beta: float = 1.0
    # "tcvae": beta-TCVAE (training/tcvae.py), the KL split into index-code mutual information (weight
    # tc_alpha), total correlation (tc_beta, the knob) and dimension-wise KL (tc_gamma); flat models only.
    objective: Literal["elbo", "tcvae"] = "elbo"
    tc_alpha: float = 1.0
    tc_beta: float = 6.0
    tc_gamma: float = 1.0
    # Linear KL warm-up from 0 to beta over this many steps (0: off).
    kl_warmup_steps: int = 0
    seed: int = 0
    threads: int = 0  # torch intra-op threads (0: torch's default)
    out_dir: str = "runs/default"
    metrics_format: Literal["jsonl", "csv"] = "jsonl"
    progress: bool = True


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; expected {sorted(sections)}")
        built = {name: _build(typing.get_type_hints(cls)[name], raw.get(name, {}), name) for name in sections}
        return cls(**built)

    @classmethod
    def load(cls, path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
        raw: dict[str, Any] = {}
        if path is not None:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        for item in overrides or []:
            _apply_override(raw, item)
        return cls.from_dict(raw)


def _build(section_type: Any, values: dict[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(section_type)
    unknown = set(values) - set(hints)
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in [{section}]; known: {sorted(hints)}")
    return section_type(**{k: _coerce(hints[k], v, f"{section}.{k}") for k, v in values.items()})


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check a value against its annotation; turns lists into tuples and ints into floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, where) for v in value)
    if origin in (typing.Union, __import__("types").UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is not hint:
        raise ValueError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """`section.key=value`; the value is parsed as a TOML value, falling back to a bare string."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ValueError(f"override {item!r} must look like section.key=value")
    dotted, text = item.split("=", 1)
    section, key = dotted.split(".", 1)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    raw.setdefault(section, {})[key] = value
