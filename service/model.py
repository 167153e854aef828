"""A served model: one exported model folder, loaded once, described by the interface every model kind shares.

Latent levels are listed bottom first: level 1 is what the decoder reads. A flat VAE has one level with the
prior Norm[0, I]; a two-level VAE (z2 -> z1 -> x) has two, the lower one's prior Pr(z1|z2) given by the
folder's prior graph. The estimator and the use cases see only:

    posterior(x)  -> [q(z_l|x) for each level]                    (the encoder graph)
    priors(z)     -> [Pr(z_l | z_{l+1}) for each level; Norm[0, I] at the top]   (the prior graphs)
    decode(z1)    -> f[z1], the likelihood's mean                 (the decoder graph)
    likelihood    -> Pr(x|z): log_prob(x, mean), sample(mean, rng)

so nothing downstream branches on the model's kind. These three block (the estimator runs them in a worker
thread); requests await the graphs themselves (`await model.encoder(x)`), which batches them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.distributions import DiagonalGaussian, Likelihood, likelihood_of
from service.graphs import BatchPolicy, Graph
from service.manifest import GraphSpec, Manifest, load_manifest
from service.metrics import Metrics
from service.offload import Workers


@dataclass
class ServedModel:
    name: str
    folder: Path
    manifest: Manifest
    encoder: Graph  # x -> (mean, logvar) of q(z_l|x) for each level, in that order
    decoder: Graph  # z1 -> f[z1]
    prior_graphs: list[Graph]  # for each level but the top, bottom first: z_{l+1} -> (mean, logvar) of Pr(z_l|.)
    likelihood: Likelihood
    # Resynthesis: attribute name -> mean posterior latent (D,) of its images, from attributes.json.
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        """The size of the decoder's latent (level 1)."""
        return self.manifest.latent_dim

    @property
    def latent_dims(self) -> list[int]:
        """The size of every level, level 1 first: the encoder's (mean, logvar) output shapes (N, D_l)."""
        shapes = list(self.encoder.spec.outputs.values())
        return [int(shapes[i][1]) for i in range(0, len(shapes), 2)]

    @property
    def providers(self) -> list[str]:
        return self.decoder.providers

    @property
    def graphs(self) -> list[Graph]:
        return [self.encoder, self.decoder, *self.prior_graphs]

    def levels(self, encoder_outputs: list[np.ndarray]) -> list[DiagonalGaussian]:
        """The encoder's outputs (mean, logvar, mean2, logvar2, ...) as q(z_l|x) per level, each (N, D_l)."""
        return [DiagonalGaussian(encoder_outputs[i], encoder_outputs[i + 1])
                for i in range(0, len(encoder_outputs), 2)]

    def posterior(self, x: np.ndarray) -> list[DiagonalGaussian]:
        """q(z_l|x) for images x (N, C, H, W), level 1 first."""
        return self.levels(self.encoder.run(x))

    def priors(self, z: list[np.ndarray]) -> list[DiagonalGaussian]:
        """Given a draw z_l (M, D_l) of every level: Pr(z_l | z_{l+1}) for each, Norm[0, I] for the top one."""
        conditional = [DiagonalGaussian(*graph.run(upper)) for graph, upper in zip(self.prior_graphs, z[1:],
                                                                                    strict=True)]
        return conditional + [DiagonalGaussian.standard(z[-1].shape)]

    def decode(self, z1: np.ndarray) -> np.ndarray:
        """f[z1] for z1 (M, D): the likelihood's mean (M, C, H, W)."""
        return self.decoder.run(z1)[0]

    async def sample_latents(self, n: int, rng: np.random.Generator, temperature: float) -> np.ndarray:
        """(n, D) draws of the decoder's level by ancestral sampling from the prior, each level's noise scaled
        by `temperature`: z_top ~ Norm[0, t^2 I], then z_l ~ Norm[m(z_{l+1}), t^2 s^2(z_{l+1})] down to level 1."""
        z = temperature * rng.standard_normal((n, self.latent_dims[-1]))
        for graph in reversed(self.prior_graphs):
            prior = DiagonalGaussian(*await graph(z))
            z = prior.mean + temperature * prior.std * rng.standard_normal(prior.mean.shape)
        return z

    def close(self) -> None:
        for graph in self.graphs:
            graph.close()


def session_options(intra_op_threads: int, inter_op_threads: int, spinning: bool) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    if not spinning:  # idle threads sleep instead of spin-waiting on the event loop's core
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


@dataclass(frozen=True)
class LoadOptions:
    """How sessions are made: execution providers, session options, batching, and where metrics go."""

    providers: list[str]
    session: ort.SessionOptions
    batching: BatchPolicy
    metrics: Metrics
    workers: Workers


def load_model(folder: Path, options: LoadOptions) -> ServedModel:
    """Validate the folder's manifest (and every file's sha256), open one session per graph, check the graphs'
    input and output names against the manifest. Raises on any problem; nothing is half-loaded."""
    manifest = load_manifest(folder)
    specs = {"encoder": manifest.encoder, "decoder": manifest.decoder}
    if manifest.hierarchy is not None:
        specs["prior"] = manifest.hierarchy.prior
    graphs = {role: open_graph(folder, spec, manifest.name, role, options) for role, spec in specs.items()}
    return ServedModel(
        name=manifest.name, folder=folder, manifest=manifest, encoder=graphs["encoder"], decoder=graphs["decoder"],
        prior_graphs=[graphs["prior"]] if "prior" in graphs else [], likelihood=likelihood_of(manifest.likelihood),
        attributes=load_attributes(folder, manifest))


def open_graph(folder: Path, spec: GraphSpec, model: str, role: str, options: LoadOptions) -> Graph:
    session = ort.InferenceSession(str(folder / spec.file), sess_options=options.session,
                                   providers=options.providers)
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != (list(spec.inputs), list(spec.outputs)):
        raise ValueError(f"{spec.file}: graph has inputs/outputs {names}, manifest says "
                         f"{list(spec.inputs)}/{list(spec.outputs)}")
    return Graph(session, spec, model, role, options.metrics, options.batching, options.workers)


def load_attributes(folder: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    if manifest.attributes is None:
        return {}
    raw = json.loads((folder / manifest.attributes.file).read_text())
    means = np.asarray(raw["means"], dtype=np.float64)
    if raw["names"] != manifest.attributes.names or means.shape != (len(raw["names"]), manifest.latent_dim):
        raise ValueError(f"{manifest.attributes.file} does not match the manifest's attributes")
    return dict(zip(raw["names"], means, strict=True))
