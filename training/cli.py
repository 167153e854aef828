"""Command line: `python -m training COMMAND ...` (also the `vae-train` script); `--help` on each command lists
its flags with their defaults.

    python -m training train --config configs/fashion-mnist.toml
    python -m training evaluate --checkpoint runs/fashion-mnist/checkpoint.pt --k 5000
    python -m training export --checkpoint runs/fashion-mnist/checkpoint.pt --name fashion-mnist
    python -m training rescore models/fashion-mnist --k 5000
    python -m training pipeline --config configs/fashion-mnist.toml --name fashion-mnist --k 5000
    python -m training disentangle --out docs/disentanglement --epochs 20
    python -m training figures --out docs/figures
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from training.config import RunConfig

# Flags that set one config key each: flag -> (section.key, type, help).
CONFIG_FLAGS: dict[str, tuple[str, type, str]] = {
    "--dataset": ("data.dataset", str, "fashion-mnist | digits | folder | shapes"),
    "--data-path": ("data.path", str, "dataset folder (IDX files, or images for 'folder'); unset: "
                    "Fashion-MNIST's system folder"),
    "--limit-train": ("data.limit_train", int, "use only the first N training images (0 = all)"),
    "--limit-test": ("data.limit_test", int, "use only the first N test images (0 = all)"),
    "--arch": ("model.arch", str, "mlp | conv | resnet"),
    "--latent-dim": ("model.latent_dim", int, "latent size D"),
    "--likelihood": ("model.likelihood", str, "gaussian | bernoulli | pixel-gaussian | logistic | logistic-mixture"),
    "--sigma": ("model.sigma", float, "Gaussian likelihood sigma (initial value if learned)"),
    "--epochs": ("train.epochs", int, "number of epochs"),
    "--batch-size": ("train.batch_size", int, "minibatch size"),
    "--lr": ("train.lr", float, "peak Adam learning rate"),
    "--beta": ("train.beta", float, "KL weight (1 = VAE, >1 = beta-VAE)"),
    "--kl-warmup-steps": ("train.kl_warmup_steps", int, "linear KL warm-up steps (0 = off)"),
    "--seed": ("train.seed", int, "random seed (a run is reproducible from it)"),
    "--threads": ("train.threads", int, "torch CPU threads (0 = torch's default)"),
    "--out": ("train.out_dir", str, "run folder: checkpoint, metrics, loss curve"),
}

# Commands whose modules parse their own flags: the main parser lists them, `main` hands them the rest.
FORWARDED: dict[str, str] = {
    "disentangle": "VAE vs beta-VAE vs beta-TCVAE on the generated shapes: MIG table, traversals",
    "figures": "the chapter's figures (mixture of Gaussians, ELBO gap, generation) as PNG",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written (the examples keep their lines), each flag's default after its help."""


def config_default(key: str) -> object:
    """The built-in value of a config key ("train.epochs"): what a run gets when neither --config nor a flag
    sets it."""
    section, name = key.split(".")
    return getattr(getattr(RunConfig(), section), name)


def config_flag_help(key: str, text: str) -> str:
    """A config flag's help: None (not given) leaves the key to --config, else to the built-in value."""
    builtin = config_default(key)
    fallback = "" if builtin is None else f", else {builtin}"
    return f"{text} (default: %(default)s = {key} from --config{fallback})"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file with [data], [model], [train] sections "
                   "(default: %(default)s = the built-in values of training/config.py)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key, e.g. --set model.hidden=[1024,512] (repeatable)")
    for flag, (key, typ, text) in CONFIG_FLAGS.items():
        p.add_argument(flag, type=typ, help=config_flag_help(key, text))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=1000, help="importance samples per image (5000 for reported figures)")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N test images only (0 = all)")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of dequantization and sampling noise")
    p.add_argument("--batch-size-eval", type=int, default=100, help="images per log-likelihood batch")
    p.add_argument("--chunk", type=int, default=250,
                   help="importance samples per decoder pass (divided by the likelihood's maps per pixel)")


def _add_export_args(p: argparse.ArgumentParser) -> None:
    # A required flag has no default to show: SUPPRESS keeps "(default: None)" off its help line.
    p.add_argument("--name", required=True, default=argparse.SUPPRESS,
                   help="model name: the folder models/<name>/ and ?model=<name>")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="where model folders go")
    p.add_argument("--description", default="", help="one line for the manifest (default: %(default)r)")
    p.add_argument("--no-attributes", action="store_true",
                   help="skip the resynthesis directions (class-mean latents of the labelled training split)")
    p.add_argument("--direction", action="append", default=[], metavar="NAME=FROM:TO",
                   help="a named resynthesis direction, e.g. --direction tops-to-dresses=t-shirt/top:dress")


def _add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, default=argparse.SUPPRESS,
                   help="a training run's checkpoint.pt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND",
                                help="each command's flags: python -m training COMMAND --help")

    def command(name: str, text: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter, **kwargs)

    p = command("train", "train a VAE; checkpoint, metrics and loss curve go to the run folder")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    p.add_argument("--stop-after", type=int, metavar="EPOCH",
                   help="stop once this many epochs are done (the schedule still spans --epochs); go on with "
                   "--resume (default: %(default)s = run every epoch)")

    p = command("evaluate", "test ELBO, importance-sampled log-likelihood, bits/dim, PNG grids")
    _add_checkpoint_arg(p)
    p.add_argument("--data-path", help="dataset folder (default: %(default)s = where training found it)")
    p.add_argument("--eval-dir", type=Path,
                   help="where eval.json and the grids go (default: %(default)s = the checkpoint's folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_eval_args(p)

    p = command("export", "write models/<name>/ (ONNX graphs + manifest), checked against PyTorch")
    _add_checkpoint_arg(p)
    p.add_argument("--eval", type=Path, help="eval.json to put in the manifest (default: %(default)s = "
                   "eval.json beside the checkpoint, if there is one; without it the manifest has no metrics)")
    _add_export_args(p)

    p = command("rescore", "evaluate an exported model folder again (its model rebuilt from the ONNX graphs) and "
                "rewrite its manifest's metrics")
    p.add_argument("folder", type=Path, help="a model folder, such as models/fashion-mnist")
    p.add_argument("--k", type=int, default=5000, help="importance samples per image")
    p.add_argument("--limit", type=int, default=0, help="the first N test images only (0 = all)")
    p.add_argument("--chunk", type=int, default=250,
                   help="importance samples per decoder pass (divided by the likelihood's maps per pixel)")
    p.add_argument("--eval-seed", type=int,
                   help="seed of dequantization and sampling noise (default: %(default)s = the manifest's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    for name, text in FORWARDED.items():
        # Never parsed here (`main` hands these to their modules first); add_help=False leaves -h to them.
        p = command(name, text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=f"see python -m training {name} --help")

    p = command("pipeline", "train, evaluate and export in one command")
    _add_config_args(p)
    _add_eval_args(p)
    _add_export_args(p)
    return parser


def _run_config(args: argparse.Namespace) -> RunConfig:
    overrides = list(args.set)
    for flag, (key, _, _) in CONFIG_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    cfg = RunConfig.load(args.config, overrides)
    if args.no_progress:
        cfg.train.progress = False
    return cfg


def cmd_train(args: argparse.Namespace) -> Path:
    from training.trainer import train

    ckpt = train(_run_config(args), resume=getattr(args, "resume", False), stop_after=getattr(args, "stop_after", None))
    if os.environ.get("RANK", "0") == "0":  # torchrun's rank of this process (the group has ended by now)
        print(f"checkpoint: {ckpt}")
    return ckpt


def cmd_evaluate(args: argparse.Namespace, checkpoint: Path, data_path: str | None = None) -> Path:
    from training.checkpoint import load_checkpoint
    from training.data import load_dataset
    from training.evaluate import evaluate, save_pictures, write_report

    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.run_config
    if data_path:
        cfg.data.path = data_path
    model = ckpt.build_model()
    data = load_dataset(cfg.data, "test").head(args.limit)
    report = evaluate(model, data, ckpt.data.pixel_mode, args.k, args.eval_seed, args.batch_size_eval,
                      args.chunk, progress=not args.no_progress)
    out = getattr(args, "eval_dir", None) or checkpoint.parent
    out.mkdir(parents=True, exist_ok=True)
    save_pictures(model, data, ckpt.data.pixel_mode, out, args.eval_seed)
    path = write_report(report, out / "eval.json")
    print(json.dumps(asdict(report), indent=2))
    return path


def cmd_export(args: argparse.Namespace, checkpoint: Path, eval_path: Path | None) -> Path:
    from training.attributes import class_means
    from training.checkpoint import load_checkpoint
    from training.data import load_dataset
    from training.evaluate import read_report
    from training.export import export_model

    eval_path = eval_path or checkpoint.parent / "eval.json"
    report = read_report(eval_path) if eval_path.is_file() else None
    pictures = [checkpoint.parent / n for n in ("samples.png", "reconstructions.png", "loss_curve.png")]
    ckpt = load_checkpoint(checkpoint)
    attributes = None
    if not args.no_attributes:
        train_data = load_dataset(ckpt.run_config.data, "train")
        if bool((train_data.labels >= 0).any()):
            attributes = class_means(ckpt.build_model(), train_data, ckpt.data.pixel_mode)
    directions = {}
    for item in args.direction:
        name, _, pair = item.partition("=")
        src, _, dst = pair.partition(":")
        if not (name and src and dst):
            raise ValueError(f"--direction {item!r} must look like NAME=FROM:TO")
        directions[name] = (src, dst)
    folder = export_model(ckpt, args.models_dir, args.name, report, [p for p in pictures if p.is_file()],
                          args.description, attributes=attributes, directions=directions)
    print(f"exported: {folder}" + ("" if report else " (no eval.json: manifest has no metrics)"))
    return folder


def _one_process_only(command: str) -> None:
    """Refuse a command other than `train` under torchrun: every rank would run all of it and write the same files."""
    from training.distributed import launched

    if launched():
        raise ValueError(f"only the train command runs under torchrun; run {command} as one process")


def _forward(command: str, argv: list[str]) -> int:
    """Run a command that parses its own flags (FORWARDED); only its module is imported (it needs torch)."""
    try:
        _one_process_only(command)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if command == "disentangle":
        from training import disentangle

        return disentangle.main(argv)
    from training import figures

    return figures.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in FORWARDED:  # commands with parsers of their own
        return _forward(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command != "train":
            _one_process_only(args.command)
        if args.command == "train":
            cmd_train(args)
        elif args.command == "evaluate":
            cmd_evaluate(args, args.checkpoint, args.data_path)
        elif args.command == "export":
            cmd_export(args, args.checkpoint, args.eval)
        elif args.command == "rescore":
            from training.rescore import rescore

            report = rescore(args.folder, args.k, args.limit, args.chunk, args.eval_seed, not args.no_progress)
            print(json.dumps(asdict(report), indent=2))
        else:
            ckpt = cmd_train(args)
            eval_path = cmd_evaluate(args, ckpt)
            cmd_export(args, ckpt, eval_path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
