"""The chapter's figures (Prince, Understanding Deep Learning, ch. 17), reproduced by one command:

    python -m training.figures --out docs/figures

writes, at 110 dpi:
  - mixture_of_gaussians.png: a mixture of Gaussians as a latent-variable model (fig. 17.2-style):
    a discrete z in {1..K}, Pr(z = k) = lambda_k, Pr(x|z = k) = Norm[x; mu_k, sigma_k^2]; the joint
    Pr(x, z = k) per component and the marginal Pr(x) = sum_k Pr(x, z = k). Below, the continuous
    version (fig. 17.3-style): z ~ Norm[0, 1], Pr(x|z) = Norm[x; f(z), sigma^2] with a nonlinear f,
    the joint as an image and the marginal integrated numerically over z.
  - elbo_gap.png: on the linear-Gaussian model of tests/training/test_linear_gaussian.py, for one x,
    the closed-form ELBO against a variational parameter (mean shift, log-variance) lying below the
    constant log Pr(x), touching it where q is the posterior, the gap being KL[q || Pr(z|x)]
    (eq. 17.17); and the importance-sampled log Pr(x) (training.estimators.log_likelihood) against K.
  - generation.png: ancestral sampling z ~ Norm[0, I], x = f[z] + sigma * eps from the shipped model
    models/fashion-mnist/ (onnxruntime only); skipped with a message if the folder is missing.

Each figure function writes its PNG and returns the arrays it plots, so tests can check the numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import service.images  # the module, not `grid`: figure_elbo_gap's loop names its x values grid
from service.manifest import LOG_2PI

DPI = 110
DEFAULT_MODEL = Path("models/fashion-mnist")


def _pyplot():
    """matplotlib with the Agg backend: no display is needed, and importing it stays lazy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def normal_pdf(x: np.ndarray, mean: np.ndarray | float, std: np.ndarray | float) -> np.ndarray:
    """Norm[x; mean, std^2], elementwise with broadcasting."""
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (np.sqrt(2.0 * np.pi) * std)


# ---------------------------------------------------------------------------------------------------
# 1. Mixture of Gaussians: discrete and continuous latent variables
# ---------------------------------------------------------------------------------------------------


@dataclass
class MixtureArrays:
    x: np.ndarray  # (n,) grid
    joint: np.ndarray  # (K, n): Pr(x, z = k) = lambda_k Norm[x; mu_k, sigma_k^2]
    marginal: np.ndarray  # (n,): sum over k
    z: np.ndarray  # (m,) grid of the continuous latent
    joint_continuous: np.ndarray  # (m, n): Pr(x, z) = Norm[x; f(z), sigma^2] Norm[z; 0, 1]
    marginal_continuous: np.ndarray  # (n,): trapezoid over z
    samples_continuous: np.ndarray  # ancestral samples x = f(z) + sigma eps, for the histogram


def nonlinear_f(z: np.ndarray) -> np.ndarray:
    """A smooth nonlinear f(z): the steep middle stretches the prior's bulk apart, so Pr(x) is bimodal."""
    return 2.0 * np.tanh(1.5 * z) + 0.5 * z


def mixture_joint(x: np.ndarray, weights, means, stds) -> np.ndarray:
    """Pr(x, z = k) = lambda_k Norm[x; mu_k, sigma_k^2] for each k: (K, len(x))."""
    w, m, s = (np.asarray(a, dtype=float)[:, None] for a in (weights, means, stds))
    return w * normal_pdf(x[None, :], m, s)


def continuous_joint(x: np.ndarray, z: np.ndarray, sigma: float) -> np.ndarray:
    """Pr(x, z) = Pr(x|z) Pr(z) on the grid: (len(z), len(x))."""
    return normal_pdf(x[None, :], nonlinear_f(z)[:, None], sigma) * normal_pdf(z, 0.0, 1.0)[:, None]


def figure_mixture(path: Path, weights=(0.25, 0.45, 0.30), means=(-2.2, 0.2, 2.6), stds=(0.55, 0.9, 0.45),
                   sigma: float = 0.35, n_samples: int = 20_000, seed: int = 0) -> MixtureArrays:
    if not math.isclose(sum(weights), 1.0):
        raise ValueError(f"mixture weights must sum to 1, got {sum(weights)}")
    x = np.linspace(-7.0, 7.0, 2801)
    joint = mixture_joint(x, weights, means, stds)
    marginal = joint.sum(0)
    # z ~ Norm[0, 1] has mass 6e-7 beyond |z| = 5, so the trapezoid over [-5, 5] loses nothing visible.
    z = np.linspace(-5.0, 5.0, 1001)
    joint_c = continuous_joint(x, z, sigma)
    marginal_c = np.trapezoid(joint_c, z, axis=0)
    rng = np.random.default_rng(seed)
    samples = nonlinear_f(rng.standard_normal(n_samples)) + sigma * rng.standard_normal(n_samples)

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax = axes[0, 0]
    for k in range(len(weights)):
        label = rf"$z={k + 1}$: $\lambda={weights[k]:.2f}$, $\mu={means[k]:+.1f}$, $\sigma={stds[k]:.2f}$"
        ax.plot(x, joint[k], color=colors[k], lw=2, label=label)
        ax.fill_between(x, joint[k], color=colors[k], alpha=0.2)
    ax.set_title(r"(a) Joint $Pr(x, z=k) = \lambda_k\,Norm_x[\mu_k, \sigma_k^2]$, one curve per $k$")
    ax.set_xlabel("x")
    ax.set_ylabel(r"$Pr(x, z=k)$")
    ax.legend(fontsize=9)

    ax = axes[0, 1]
    ax.stackplot(x, joint, colors=colors[: len(weights)], alpha=0.35,
                 labels=[rf"$Pr(x, z={k + 1})$" for k in range(len(weights))])
    ax.plot(x, marginal, color="black", lw=2, label=r"$Pr(x) = \sum_k Pr(x, z=k)$")
    ax.set_title(r"(b) Marginal $Pr(x)$: the components stacked")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.legend(fontsize=9)

    ax = axes[1, 0]
    im = ax.imshow(joint_c, origin="lower", aspect="auto", cmap="viridis",
                   extent=(x[0], x[-1], z[0], z[-1]))
    ax.plot(nonlinear_f(z), z, color="white", ls="--", lw=1.5, label=r"$x = f(z) = 2\tanh(1.5z) + 0.5z$")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(-3.5, 3.5)
    ax.set_title(rf"(c) Continuous $z$: joint $Pr(x, z) = Norm_x[f(z), {sigma}^2]\,Norm_z[0, 1]$")
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax.legend(loc="upper left", fontsize=9)
    fig.colorbar(im, ax=ax, label=r"$Pr(x, z)$")

    ax = axes[1, 1]
    ax.hist(samples, bins=120, range=(x[0], x[-1]), density=True, color="0.75",
            label=f"{n_samples:,} ancestral samples $z \\sim Norm[0,1]$, $x = f(z) + \\sigma\\epsilon$")
    ax.plot(x, marginal_c, color="black", lw=2, label=r"$Pr(x) = \int Pr(x, z)\,dz$ (trapezoid over z)")
    ax.set_title(r"(d) Marginal of the continuous model")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.legend(fontsize=9, loc="upper left")
    ax.set_ylim(0, 1.35 * marginal_c.max())

    fig.suptitle("Mixture of Gaussians as a latent-variable model (Prince figs. 17.2-17.3)", fontsize=13)
    fig.tight_layout()
    _save(fig, path)
    return MixtureArrays(x, joint, marginal, z, joint_c, marginal_c, samples)


# ---------------------------------------------------------------------------------------------------
# 2. The ELBO's gap on the linear-Gaussian model
# ---------------------------------------------------------------------------------------------------


@dataclass
class LinearGaussian:
    """z ~ Norm[0, I], x = W z + b + sigma eps; W has orthogonal columns, so Pr(z|x) is diagonal."""

    w: np.ndarray  # (D_x, D_z)
    b: np.ndarray  # (D_x,)
    sigma: float

    @property
    def posterior_cov(self) -> np.ndarray:
        """S = (I + W^T W / sigma^2)^-1."""
        return np.linalg.inv(np.eye(self.w.shape[1]) + self.w.T @ self.w / self.sigma**2)

    def posterior_mean(self, x: np.ndarray) -> np.ndarray:
        return self.posterior_cov @ self.w.T @ (x - self.b) / self.sigma**2

    def log_px(self, x: np.ndarray) -> float:
        """Exact log Norm[x; b, W W^T + sigma^2 I]."""
        cov = self.w @ self.w.T + self.sigma**2 * np.eye(len(self.b))
        d = x - self.b
        _, logdet = np.linalg.slogdet(cov)
        return float(-0.5 * (len(d) * LOG_2PI + logdet + d @ np.linalg.solve(cov, d)))

    def elbo(self, x: np.ndarray, mu: np.ndarray, var: np.ndarray) -> float:
        """E_q[log Norm[x; W z + b, sigma^2 I]] - KL[q || Norm(0, I)] for q = Norm[mu, diag(var)]."""
        resid = x - self.b - self.w @ mu
        expected_loglik = -0.5 * (len(x) * math.log(2 * math.pi * self.sigma**2)
                                  + (resid @ resid + np.sum(var * np.sum(self.w**2, 0))) / self.sigma**2)
        kl_prior = 0.5 * np.sum(mu**2 + var - 1.0 - np.log(var))
        return float(expected_loglik - kl_prior)


def linear_gaussian(seed: int = 0, sigma: float = 0.5) -> LinearGaussian:
    """The model of tests/training/test_linear_gaussian.py (same seed, same W and b)."""
    rng = np.random.default_rng(seed)
    q_basis, _ = np.linalg.qr(rng.normal(size=(4, 2)))
    return LinearGaussian(q_basis @ np.diag([1.5, 0.7]), rng.normal(size=4) * 0.3, sigma)


def kl_gaussians(mu0: np.ndarray, cov0: np.ndarray, mu1: np.ndarray, cov1: np.ndarray) -> float:
    """KL[Norm(mu0, cov0) || Norm(mu1, cov1)] in closed form."""
    inv1 = np.linalg.inv(cov1)
    d = mu1 - mu0
    _, logdet0 = np.linalg.slogdet(cov0)
    _, logdet1 = np.linalg.slogdet(cov1)
    return 0.5 * float(np.trace(inv1 @ cov0) + d @ inv1 @ d - len(mu0) + logdet1 - logdet0)


def linear_gaussian_vae(model: LinearGaussian, mean_shift=(0.0, 0.0), logvar_shift: float = 0.0):
    """The project's VAE (linear MLP, identity mean, fixed sigma, float64) holding the model exactly;
    its encoder outputs the exact posterior moved by mean_shift and with log-variance + logvar_shift."""
    import torch

    from training.config import ModelConfig
    from training.models import VAE

    cfg = ModelConfig(arch="mlp", latent_dim=2, hidden=(), likelihood="gaussian", sigma=model.sigma,
                      learn_sigma=False, mean_activation="identity", logvar_min=-30, logvar_max=30)
    vae = VAE(cfg, (1, 2, 2)).double()
    cov = model.posterior_cov
    a = cov @ model.w.T / model.sigma**2  # posterior mean = a (x - b)
    # hidden=() leaves one Linear layer in each of encoder and decoder.
    dec = next(m for m in vae.decoder.modules() if isinstance(m, torch.nn.Linear))
    enc = next(m for m in vae.encoder.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        dec.weight.copy_(torch.from_numpy(model.w))
        dec.bias.copy_(torch.from_numpy(model.b))
        enc.weight.zero_()
        enc.weight[:2] = torch.from_numpy(a)
        enc.bias[:2] = torch.from_numpy(-a @ model.b + np.asarray(mean_shift, dtype=float))
        enc.bias[2:] = torch.from_numpy(np.log(np.diag(cov)) + logvar_shift)
    return vae.eval()


@dataclass
class ElboGapArrays:
    x: np.ndarray  # (4,) the observation
    log_px: float  # exact
    posterior_mean: np.ndarray  # (2,)
    posterior_var: np.ndarray  # (2,)
    shift: np.ndarray  # (n,) proposal mean = posterior mean + shift * e_1, variance the posterior's
    elbo_shift: np.ndarray  # (n,) closed-form ELBO
    kl_shift: np.ndarray  # (n,) closed-form KL[q || Pr(z|x)]
    logvar: np.ndarray  # (n,) proposal log-variance of z_1, mean and the other variance the posterior's
    elbo_logvar: np.ndarray
    kl_logvar: np.ndarray
    ks: np.ndarray  # (m,) numbers of importance samples
    is_estimates: np.ndarray  # (repeats, m) importance-sampled log Pr(x)
    proposal_elbo: float  # closed-form ELBO of the worse proposal: the K = 1 expectation

    @property
    def is_mean(self) -> np.ndarray:
        return self.is_estimates.mean(0)


def default_ks(k_max: int = 5000) -> np.ndarray:
    """1, 2, 5, 10, 20, 50, ... up to and including k_max."""
    ks = [m * 10**e for e in range(int(math.log10(k_max)) + 1) for m in (1, 2, 5) if m * 10**e < k_max]
    return np.array([*ks, k_max])


def importance_sampled_estimates(model: LinearGaussian, x: np.ndarray, ks, repeats: int, mean_shift,
                                 logvar_shift: float, seed: int = 0) -> np.ndarray:
    """(repeats, len(ks)) independent estimates of log Pr(x) by training.estimators.log_likelihood."""
    import torch

    from training.estimators import log_likelihood

    vae = linear_gaussian_vae(model, mean_shift, logvar_shift)
    image = torch.from_numpy(x).view(1, 1, 2, 2)
    out = np.empty((repeats, len(ks)))
    for j, k in enumerate(ks):
        # An image's draws depend on the seed only (training/estimators.py), so the repeats are successive
        # estimates from one stream rather than copies of the image in one batch.
        rng = np.random.default_rng([seed, int(k)])
        for r in range(repeats):
            out[r, j] = float(log_likelihood(vae, image, int(k), chunk=int(k), rng=rng).log_likelihood[0])
    return out


def figure_elbo_gap(path: Path, ks=None, repeats: int = 200, mean_shift=(0.6, -0.4), logvar_shift: float = 1.0,
                    seed: int = 0) -> ElboGapArrays:
    model = linear_gaussian()
    x = np.random.default_rng(1).normal(size=4)  # the first image of the test's _images(1)
    log_px = model.log_px(x)
    post_mu, post_cov = model.posterior_mean(x), model.posterior_cov
    post_var = np.diag(post_cov).copy()

    # (a) q = Norm[post_mu + t e_1, S]; (b) q = Norm[post_mu, diag(exp(l), S_22)]. Both grids hold the
    # posterior's parameter exactly, so the curve's maximum is attained on the grid.
    shift = np.linspace(-0.8, 0.8, 321)
    logvar = math.log(post_var[0]) + np.linspace(-3.0, 1.5, 301)

    def curve(mus, variances):
        elbos = np.array([model.elbo(x, m, v) for m, v in zip(mus, variances, strict=True)])
        kls = np.array([kl_gaussians(m, np.diag(v), post_mu, post_cov) for m, v in zip(mus, variances, strict=True)])
        return elbos, kls

    elbo_shift, kl_shift = curve([post_mu + np.array([t, 0.0]) for t in shift], [post_var] * len(shift))
    elbo_lv, kl_lv = curve([post_mu] * len(logvar), [np.array([math.exp(lv), post_var[1]]) for lv in logvar])

    ks = default_ks() if ks is None else np.asarray(ks)
    estimates = importance_sampled_estimates(model, x, ks, repeats, mean_shift, logvar_shift, seed)
    worse_mu, worse_var = post_mu + np.asarray(mean_shift), post_var * math.exp(logvar_shift)
    proposal_elbo = model.elbo(x, worse_mu, worse_var)
    proposal_kl = kl_gaussians(worse_mu, np.diag(worse_var), post_mu, post_cov)

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.0))
    for ax, grid, elbos, kls, mark, xlabel, title in (
        (axes[0], shift, elbo_shift, kl_shift, 0.0, r"shift $t$ of the proposal mean along $z_1$",
         r"(a) ELBO vs the mean of $q$: $\mu_q = \mu_{post} + t\,e_1$"),
        (axes[1], logvar, elbo_lv, kl_lv, math.log(post_var[0]), r"proposal log-variance $\log \sigma^2_{q,1}$",
         r"(b) ELBO vs the log-variance of $q$ along $z_1$"),
    ):
        ax.axhline(log_px, color="black", lw=2, label=rf"exact $\log Pr(x) = {log_px:.3f}$")
        ax.plot(grid, elbos, color="C0", lw=2, label="ELBO (closed form)")
        ax.fill_between(grid, elbos, log_px, color="C1", alpha=0.3,
                        label=r"gap $= KL[q(z)\,\|\,Pr(z|x)]$")
        ax.axvline(mark, color="0.4", ls=":", label=r"$q = Pr(z|x)$: gap $= 0$")
        # The gap at one parameter right of the optimum, as a double arrow from the ELBO up to log Pr(x),
        # labelled in the white space under the peak (the arms leave room there).
        span = kls.max()
        right = np.flatnonzero(grid > mark)
        i = int(right[np.argmin(np.abs(kls[right] - 0.6 * kls[right[-1]]))])
        ax.annotate("", xy=(grid[i], elbos[i]), xytext=(grid[i], log_px),
                    arrowprops={"arrowstyle": "<->", "color": "0.15", "lw": 1.5})
        ax.annotate(f"gap at the arrow:\n$KL[q\\,\\|\\,Pr(z|x)] = {kls[i]:.3f}$\n$= \\log Pr(x) - ELBO$",
                    xy=(grid[i], 0.5 * (elbos[i] + log_px)), xytext=(mark, log_px - 0.55 * span),
                    ha="center", va="center", fontsize=9, bbox={"boxstyle": "round", "fc": "white", "ec": "0.6"},
                    arrowprops={"arrowstyle": "->", "color": "0.4"})
        ax.set_ylim(log_px - 1.55 * span, log_px + 0.12 * span)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("nats")
        ax.set_title(title, fontsize=11)
        ax.legend(loc="lower center", fontsize=9)

    ax = axes[2]
    lo, hi = np.percentile(estimates, [10, 90], axis=0)
    ax.fill_between(ks, lo, hi, color="C0", alpha=0.25, label=f"10th-90th percentile over {repeats} repeats")
    ax.plot(ks, estimates.mean(0), "o-", color="C0", lw=2, ms=4, label="mean of the estimates")
    ax.axhline(log_px, color="black", lw=2, label=r"exact $\log Pr(x)$")
    ax.axhline(proposal_elbo, color="C3", ls="--", label=f"ELBO of this $q$ (= mean at K = 1): {proposal_elbo:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("K, importance samples (log scale)")
    ax.set_ylabel(r"estimate of $\log Pr(x)$, nats")
    ax.set_title(r"(c) $\log \frac{1}{K}\sum_k \frac{Pr(x|z_k)Pr(z_k)}{q(z_k)}$, $z_k \sim q$"
                 f" (worse $q$: KL = {proposal_kl:.2f})", fontsize=11)
    ax.set_ylim(min(proposal_elbo, lo.min()) - 0.3, max(log_px, hi.max()) + 0.3)
    ax.legend(loc="lower right", fontsize=9)

    fig.suptitle(r"Linear-Gaussian model: ELBO $= \log Pr(x) - KL[q(z)\,\|\,Pr(z|x)]$ (Prince eq. 17.17), "
                 "and importance sampling closes the gap as K grows", fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    return ElboGapArrays(x, log_px, post_mu, post_var, shift, elbo_shift, kl_shift, logvar, elbo_lv, kl_lv,
                         ks, estimates, proposal_elbo)


# ---------------------------------------------------------------------------------------------------
# 3. Generation from the shipped model
# ---------------------------------------------------------------------------------------------------


@dataclass
class GenerationArrays:
    z: np.ndarray  # (n, D)
    means: np.ndarray  # (n, C, H, W): f[z], the decoder's output
    samples: np.ndarray  # (n, C, H, W): x ~ Pr(x|z), unclipped
    sigma: float | None  # the Gaussian likelihood's sigma (None: Bernoulli)


def tile(images: np.ndarray, ncols: int, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) -> one (rows, cols) or (rows, cols, C) array for imshow: service.images.grid's layout
    (white padding), values clipped to [0, 1]."""
    out = service.images.grid(np.clip(images, 0.0, 1.0), ncols, pad)
    return out[0] if out.shape[0] == 1 else out.transpose(1, 2, 0)


def figure_generation(path: Path, model_dir: Path = DEFAULT_MODEL, n: int = 64,
                      seed: int = 0) -> GenerationArrays | None:
    """z ~ Norm[0, I], then f[z] and x = f[z] + sigma eps (Bernoulli: x ~ Bern(f[z])); None if no model."""
    model_dir = Path(model_dir)
    if not (model_dir / "manifest.json").is_file():
        print(f"skipping {path.name}: no model folder at {model_dir}/ (build it with `make default-model`, "
              "or pass --model DIR)", file=sys.stderr)
        return None
    import onnxruntime as ort

    from service.manifest import load_manifest

    manifest = load_manifest(model_dir)  # also checks every file's sha256
    session = ort.InferenceSession(str(model_dir / manifest.decoder.file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, manifest.latent_dim)).astype(np.float32)
    (means,) = session.run(["mean"], {"z": z})
    if manifest.likelihood.type == "gaussian":
        sigma = manifest.likelihood.sigma
        samples = means + sigma * rng.standard_normal(means.shape)
        noisy_title = rf"(b) $x = f[z] + \sigma\epsilon$, $\sigma = {sigma:.3f}$ (clipped to [0, 1] for display)"
    else:
        sigma = None
        samples = (rng.random(means.shape) < means).astype(np.float64)
        noisy_title = r"(b) $x \sim Bern(f[z])$"

    ncols = math.ceil(math.sqrt(n))
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.6))
    for ax, images, title in ((axes[0], means, r"(a) Means $f[z]$ of $Pr(x|z)$, $z \sim Norm[0, I]$"),
                              (axes[1], samples, noisy_title)):
        ax.imshow(tile(np.asarray(images, dtype=np.float64), ncols), cmap="gray", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{n} draws, seed {seed}; the same z in both panels")
    fig.suptitle(f"Generation: sample z, then x (model '{manifest.name}', {manifest.latent_dim}-d latent, "
                 f"{manifest.likelihood.type} likelihood)", fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    return GenerationArrays(z, np.asarray(means), np.asarray(samples), sigma)


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from training.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m training figures", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="output folder (created)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder for generation.png")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (the figures are reproducible)")
    parser.add_argument("--repeats", type=int, default=200, help="importance-sampling repeats per K")
    parser.add_argument("--k-max", type=int, default=5000, help="largest K of the importance-sampling panel")
    args = parser.parse_args(argv)

    figure_mixture(args.out / "mixture_of_gaussians.png", seed=args.seed)
    figure_elbo_gap(args.out / "elbo_gap.png", ks=default_ks(args.k_max), repeats=args.repeats, seed=args.seed)
    written = ["mixture_of_gaussians.png", "elbo_gap.png"]
    if figure_generation(args.out / "generation.png", args.model, seed=args.seed) is not None:
        written.append("generation.png")
    for name in written:
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
