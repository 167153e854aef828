"""Extract the openAPIV3Schema of one version of a KServe CRD into the JSON file the tests validate against.

    git clone https://github.com/kserve/kserve && git -C kserve checkout COMMIT
    python deploy/kserve/schemas/extract.py kserve config/crd/full/serving.kserve.io_servingruntimes.yaml \
        v1alpha1 deploy/kserve/schemas/servingruntime-v1alpha1.json

The schema is copied whole (nothing pruned); the file records the repository, commit and CRD it came from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a git checkout of kserve/kserve")
    parser.add_argument("crd", help="the CRD file, relative to the checkout")
    parser.add_argument("version", help="the CRD version whose schema to keep, e.g. v1beta1")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()

    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(args.checkout), *cmd], capture_output=True, text=True,
                              check=True).stdout.strip()

    crd = next(d for d in yaml.safe_load_all((args.checkout / args.crd).read_text()) if d)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == args.version)
    doc = {
        "source": {
            "repository": "https://github.com/kserve/kserve",
            "commit": git("rev-parse", "HEAD"),
            "describe": git("describe", "--tags"),
            "path": args.crd,
            "crd": crd["metadata"]["name"],
            "group": crd["spec"]["group"],
            "kind": crd["spec"]["names"]["kind"],
            "version": args.version,
        },
        "openAPIV3Schema": version["schema"]["openAPIV3Schema"],
    }
    args.out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
