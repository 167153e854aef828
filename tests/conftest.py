"""Shared fixtures: tiny configs on real data (scikit-learn's digits), fixed seeds."""

from pathlib import Path

import pytest

from training.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def digits_config(out_dir: Path, epochs: int = 3, **train) -> RunConfig:
    """A small MLP VAE on 600 digits: a few seconds per run on 2 CPU cores."""
    return RunConfig(
        data=DataConfig(dataset="digits", limit_train=600, limit_test=200),
        model=ModelConfig(arch="mlp", latent_dim=4, hidden=(64,), sigma=0.2),
        train=TrainConfig(epochs=epochs, batch_size=50, lr=3e-3, lr_warmup_steps=10, seed=0,
                          out_dir=str(out_dir), progress=False, **train),
    )


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory) -> Path:
    """Checkpoint of a short digits run, shared by the evaluation and export tests."""
    from training.trainer import train

    return train(digits_config(tmp_path_factory.mktemp("digits_run"), epochs=4))


NEW_LIKELIHOODS = ("pixel-gaussian", "logistic", "logistic-mixture")


@pytest.fixture(scope="session")
def likelihood_models(tmp_path_factory):
    """{likelihood: checkpoint} of a short digits run with each likelihood beside the chapter's (a mixture of 3),
    and a folder of their exported models, each named after its likelihood."""
    from training.checkpoint import load_checkpoint
    from training.export import export_model
    from training.trainer import train

    root, checkpoints = tmp_path_factory.mktemp("likelihood_models"), {}
    for name in NEW_LIKELIHOODS:
        cfg = digits_config(tmp_path_factory.mktemp(f"{name}_run"), epochs=3)
        cfg.model.likelihood, cfg.model.mixture_components = name, 3
        checkpoints[name] = train(cfg)
        export_model(load_checkpoint(checkpoints[name]), root, name)
    return checkpoints, root


@pytest.fixture(scope="session")
def two_level_digits(tmp_path_factory) -> Path:
    """Checkpoint of a short run of the two-level (hierarchical-prior) model on the digits."""
    from training.trainer import train

    cfg = digits_config(tmp_path_factory.mktemp("two_level_run"), epochs=4)
    cfg.model.hierarchy, cfg.model.latent_dim2, cfg.model.prior_hidden = "two-level", 3, (32,)
    return train(cfg)
