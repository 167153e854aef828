"""The total-correlation VAE objective (beta-TCVAE; Chen et al. 2018, "Isolating Sources of
Disentanglement in Variational Autoencoders", NeurIPS), as pure functions of tensors.

The KL term of the ELBO (Prince ch. 17), averaged over the data, splits into three parts:

    E_x KL[q(z|x) || p(z)] = I_q(x; z)                        mutual information (index-code MI)
                           + KL[q(z) || prod_d q(z_d)]         total correlation (TC)
                           + sum_d KL[q(z_d) || p(z_d)]        dimension-wise KL

where q(z) = (1/N) sum_n q(z|x_n) is the aggregate posterior over the N training examples and
p(z) = Norm[0, I]. beta-TCVAE weights them separately (alpha, beta, gamma) and penalises only the
TC heavily, which pushes the aggregate posterior towards independent latent dimensions without
also squeezing the information each code carries about its input (as a beta-VAE's beta would).

q(z) and q(z_d) are intractable, so they are estimated on the minibatch by minibatch-weighted sampling
(MWS; Chen et al. 2018, "Training with minibatch-weighted sampling" and its appendix). Everything here
is per example and in the dtype it is given; nothing is averaged until `TCVAEParts.loss` / `summary()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from training.distributions import gaussian_log_density, kl_to_standard_normal, standard_normal_log_density


def log_q_matrix(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z_i[d] | x_j) for every pair (i, j) of the minibatch and every latent dimension d.

    z, mu, logvar are (B, D): z_i is the sample drawn from q(z|x_i) = Norm[mu_i, diag exp(logvar_i)].
    Returns (B, B, D), entry [i, j, d] = log Norm[z_i[d]; mu_j[d], exp(logvar_j[d])]; the diagonal
    i == j summed over d is log q(z_i|x_i). Memory is O(B^2 D): 256 x 256 x 32 floats is 8 MB.
    """
    # z varies along the first axis, the encoder's parameters along the second: (B, 1, D) vs (1, B, D).
    return gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))


@dataclass
class KLDecomposition:
    """Per-example one-sample estimates in nats, each (B,), of the three parts of the KL.

    mutual_info + total_correlation + dimension_kl == log q(z|x) - log p(z) exactly (the estimates of
    log q(z) and log q(z_d) cancel), a one-sample estimate of KL[q(z|x) || p(z)].
    """

    mutual_info: torch.Tensor  # log q(z|x) - log q(z)
    total_correlation: torch.Tensor  # log q(z) - sum_d log q(z_d)
    dimension_kl: torch.Tensor  # sum_d log q(z_d) - log p(z)


def kl_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int) -> KLDecomposition:
    """Split log q(z|x) - log p(z) per example into mutual information, total correlation and
    dimension-wise KL, estimating the aggregate posterior by minibatch-weighted sampling.

    z, mu, logvar are (B, D), z_i ~ q(z|x_i); dataset_size = N, the number of training examples.

    Minibatch-weighted sampling (Chen et al. 2018): the minibatch {x_j} of size B stands in for the
    N-example dataset in the aggregate posterior q(z) = (1/N) sum_n q(z|x_n), each x_j weighted 1 / (B N):

        log q(z_i)    ~ logsumexp_j [ sum_d log q(z_i[d] | x_j) ] - log(B N)
        log q(z_i[d]) ~ logsumexp_j [ log q(z_i[d] | x_j) ]       - log(B N)   (each dimension d)

    These are the weights of the paper and of its reference code (rtqichen/beta-tcvae). N only shifts
    the parts by constants: multiplying N by k adds log k to MI, (D - 1) log k to TC and -D log k to
    the dimension KL, so N leaves every gradient unchanged but not the reported values. With N = 1 the
    weights are 1 / B and log q(z) is a Gaussian kernel density estimate of the aggregate posterior on
    the batch (bandwidth the posterior scale): its TC then approaches the true total correlation as B
    grows and the variances shrink. With N = B the weights are 1 / B^2 and TC sits (D - 1) log B above
    that kernel estimate. The log of a sum is biased in any case (the paper's minibatch-stratified
    variant reduces the bias); p(z) = Norm[0, I].
    """
    batch = z.shape[0]
    log_norm = math.log(batch * dataset_size)
    mat = log_q_matrix(z, mu, logvar)  # (B, B, D)
    log_qz_given_x = gaussian_log_density(z, mu, logvar).sum(-1)  # (B,), the diagonal of mat summed over D
    log_qz = torch.logsumexp(mat.sum(-1), dim=1) - log_norm  # (B,): joint density, D summed first
    log_qz_dims = (torch.logsumexp(mat, dim=1) - log_norm).sum(-1)  # (B,): product of the marginals
    log_pz = standard_normal_log_density(z).sum(-1)  # (B,)
    return KLDecomposition(
        mutual_info=log_qz_given_x - log_qz,
        total_correlation=log_qz - log_qz_dims,
        dimension_kl=log_qz_dims - log_pz,
    )


@dataclass
class TCVAEParts:
    """Per-example values in nats, each (B,), of the beta-TCVAE objective and of the plain ELBO."""

    reconstruction: torch.Tensor  # one-sample estimate of E_q[log Pr(x|z)]
    kl: torch.Tensor  # KL[q(z|x) || Norm(0, I)], closed form
    elbo: torch.Tensor  # reconstruction - kl: the true bound, for reporting
    mutual_info: torch.Tensor  # MWS estimates, see kl_decomposition
    total_correlation: torch.Tensor
    dimension_kl: torch.Tensor
    objective: torch.Tensor  # reconstruction - alpha * MI - beta * TC - gamma * dimension KL: what training maximises

    @property
    def loss(self) -> torch.Tensor:
        """Scalar to minimise: minus the mean weighted objective."""
        return -self.objective.mean()

    def summary(self) -> dict[str, float]:
        """Batch means (nats per example)."""
        return {
            name: float(getattr(self, name).mean())
            for name in (
                "objective", "elbo", "reconstruction", "kl", "mutual_info", "total_correlation", "dimension_kl",
            )
        }


def tcvae_objective(
    log_px_given_z: torch.Tensor,
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    dataset_size: int,
    alpha: float = 1.0,
    beta: float = 6.0,
    gamma: float = 1.0,
) -> TCVAEParts:
    """Pure: the beta-TCVAE objective per example (Chen et al. 2018),

        log Pr(x|z) - alpha * MI - beta * TC - gamma * dimension KL,

    from log Pr(x|z) (B,) at one z ~ q(z|x) (B, D) and q's parameters mu, logvar (B, D); the parts use
    the minibatch-weighted sampling estimates of kl_decomposition with N = dataset_size.

    With alpha = beta = gamma = 1 the three parts sum to log q(z|x) - log p(z), whose expectation over
    z ~ q(z|x) is the closed-form KL, so the objective's expectation equals the ELBO's: the two differ
    only in the KL estimator (one-sample vs closed form). The returned `elbo` always uses the closed form.
    """
    kl = kl_to_standard_normal(mu, logvar).sum(-1)  # (B,)
    parts = kl_decomposition(z, mu, logvar, dataset_size)
    objective = (
        log_px_given_z - alpha * parts.mutual_info - beta * parts.total_correlation - gamma * parts.dimension_kl
    )
    return TCVAEParts(
        reconstruction=log_px_given_z,
        kl=kl,
        elbo=log_px_given_z - kl,
        mutual_info=parts.mutual_info,
        total_correlation=parts.total_correlation,
        dimension_kl=parts.dimension_kl,
        objective=objective,
    )
