"""A served model: one exported model folder, loaded once, described by the interface every model kind shares.

Latent levels are listed bottom first: level 1 is what the decoder reads. A flat VAE has one level with the
prior Norm[0, I]; a two-level VAE (z2 -> z1 -> x) has two, the lower one's prior Pr(z1|z2) given by the
folder's prior graph. The estimator and the use cases see only:

    posterior(x)  -> [q(z_l|x) for each level]                    (the encoder graph)
    priors(z)     -> [Pr(z_l | z_{l+1}) for each level; Norm[0, I] at the top]   (the prior graphs)
    decode(z1)    -> the likelihood's parameters at z1              (the decoder graph's outputs)
    likelihood    -> Pr(x|z): log_prob(x, params), mean(params), sample(params, rng)

so nothing downstream branches on the model's kind. These three block (the estimator runs them in a worker
thread); requests await the graphs themselves (`await model.encoder(x)`), which batches them.

A folder whose manifest lies is refused at load, not answered with 500s later: every graph's inputs and outputs
(names, float32, shapes) are checked against what the manifest's image and latent sizes imply
(`declared_shapes`), statically and by running the graph once on two rows of zeros, since exported graphs often
leave their output sizes symbolic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.distributions import DiagonalGaussian, Likelihood, likelihood_of
from service.graphs import BatchPolicy, Graph
from service.manifest import (
    BATCH_AXIS,
    Declared,
    GraphSpec,
    Manifest,
    declared_shapes,
    likelihood_outputs,
    load_manifest,
)
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
        """The size of every level, level 1 first (the graphs were checked against them at load)."""
        return self.manifest.latent_levels

    @property
    def values_per_pixel(self) -> int:
        """The decoder's outputs per image value: 1 for a mean, 2 for mean and variance, 3K for a mixture."""
        image = self.manifest.image
        outputs = likelihood_outputs(self.manifest.likelihood, image)  # (name, ["N", ...]) each
        return sum(math.prod(int(d) for d in shape[1:]) for _, shape in outputs) // image.num_dims

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

    def decode(self, z1: np.ndarray) -> list[np.ndarray]:
        """The likelihood's parameters at z1 (M, D): the decoder graph's outputs, each (M, ...)."""
        return self.decoder.run(z1)

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


class GraphMismatch(ValueError):
    """A graph that does not take or give what the manifest says: names its file, the tensor and both sides."""


def load_model(folder: Path, options: LoadOptions) -> ServedModel:
    """Validate the folder's manifest (and every file's sha256), open one session per graph, check each graph's
    inputs and outputs against the manifest. Raises on any problem; nothing is half-loaded."""
    manifest = load_manifest(folder)
    shapes = declared_shapes(manifest)
    graphs = {role: open_graph(folder, spec, shapes[role], manifest.name, role, options)
              for role, spec in manifest.graphs.items()}
    return ServedModel(
        name=manifest.name, folder=folder, manifest=manifest, encoder=graphs["encoder"], decoder=graphs["decoder"],
        prior_graphs=[graphs["prior"]] if "prior" in graphs else [],
        likelihood=likelihood_of(manifest.likelihood, manifest.image.levels),
        attributes=load_attributes(folder, manifest))


def open_graph(folder: Path, spec: GraphSpec, declared: tuple[list[Declared], list[Declared]], model: str,
               role: str, options: LoadOptions) -> Graph:
    session = ort.InferenceSession(str(folder / spec.file), sess_options=options.session,
                                   providers=options.providers)
    check_graph(session, spec, *declared)
    return Graph(session, spec, model, role, options.metrics, options.batching, options.workers)


def check_graph(session: ort.InferenceSession, spec: GraphSpec, inputs: list[Declared], outputs: list[Declared]
                ) -> None:
    """Raise GraphMismatch unless the graph's inputs and outputs are, in order, the manifest's names, float32,
    and of the declared shapes (the batch axis dynamic, every other axis the declared size), and the manifest's
    own graph spec lists the same shapes (the service reads them too)."""
    check_tensors(spec.file, "input", session.get_inputs(), spec.inputs, inputs)
    check_tensors(spec.file, "output", session.get_outputs(), spec.outputs, outputs)
    check_run(session, spec, inputs[0], outputs)


def check_tensors(file: str, kind: str, tensors: list[ort.NodeArg], listed: dict[str, list[str | int]],
                  wanted: list[Declared]) -> None:
    if len(tensors) != len(wanted) or len(listed) != len(wanted):
        raise GraphMismatch(f"{file}: the graph has {kind}s {[t.name for t in tensors]}, the manifest lists "
                            f"{list(listed)} and its latent levels need {len(wanted)}")
    for tensor, (name, shape), want in zip(tensors, listed.items(), wanted, strict=True):
        where = f"{file}: {kind} {name!r}"
        if tensor.name != name:
            raise GraphMismatch(f"{where} is named {tensor.name!r} in the graph")
        if tensor.type != "tensor(float)":
            raise GraphMismatch(f"{where} is {tensor.type} in the graph, the manifest says float32")
        if shape != want.shape:
            raise GraphMismatch(f"{where} is listed as {show(shape)} in the manifest's graph spec, but its "
                                f"{want.source} makes it {show(want.shape)}")
        if not fits(tensor.shape, want.shape):
            raise GraphMismatch(f"{where} is {show(tensor.shape)} in the graph, the manifest says "
                                f"{show(want.shape)} ({want.source})")


def check_run(session: ort.InferenceSession, spec: GraphSpec, taken: Declared, outputs: list[Declared]) -> None:
    """Exported graphs often leave output sizes symbolic: run the graph once on two rows of zeros and check what
    it gives (two rows: a graph that takes only one fails here, not in the first batch it is sent)."""
    rows = np.zeros([2, *(int(d) for d in taken.shape[1:])], np.float32)  # (2, ...): its sizes checked above
    results = session.run(list(spec.outputs), {next(iter(spec.inputs)): rows})
    for array, name, want in zip(results, spec.outputs, outputs, strict=True):
        if array.dtype != np.float32 or list(array.shape) != [2, *want.shape[1:]]:
            raise GraphMismatch(f"{spec.file}: output {name!r} is {array.dtype} {show(array.shape)} for 2 rows "
                                f"when run, the manifest says float32 {show(want.shape)} ({want.source})")


def fits(graph: list[str | int | None], declared: list[str | int]) -> bool:
    """A graph axis fits a declared size when it is that size or symbolic (settled by running the graph); the
    batch axis must be symbolic (a fixed one would break batching)."""
    return len(graph) == len(declared) and all(
        not isinstance(g, int) if d == BATCH_AXIS else (g == d or not isinstance(g, int))
        for g, d in zip(graph, declared, strict=True))


def show(shape: Sequence[object]) -> str:
    """A shape as the manifest writes it: [N, 1, 28, 28]; "?" for an axis with no name or size."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def load_attributes(folder: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    if manifest.attributes is None:
        return {}
    raw = json.loads((folder / manifest.attributes.file).read_text())
    means = np.asarray(raw["means"], dtype=np.float64)
    if raw["names"] != manifest.attributes.names or means.shape != (len(raw["names"]), manifest.latent_dim):
        raise ValueError(f"{manifest.attributes.file} does not match the manifest's attributes")
    return dict(zip(raw["names"], means, strict=True))
