"""`python -m service --model-dir models`: check and describe the exported models.

The HTTP endpoints (/encode, /decode, /sample, /loglik) are the next milestone; for now this loads
every model folder exactly as the service will (manifest validated, hashes checked, onnxruntime
sessions created and run once) and prints its model card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.model_card import model_cards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models"), help="folder of model folders")
    args = parser.parse_args(argv)
    if not args.model_dir.is_dir():
        print(f"error: model directory {args.model_dir} does not exist", file=sys.stderr)
        return 2
    cards, errors = model_cards(args.model_dir)
    for line in errors:
        print(line, file=sys.stderr)
    print("\n\n".join(cards) if cards else f"no loadable model under {args.model_dir}")
    return 0 if cards else 1


if __name__ == "__main__":
    sys.exit(main())
