"""Per-epoch metrics written as JSON lines or CSV (rewritten whole each epoch, so resume stays exact)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def write_metrics(out_dir: Path, history: list[dict[str, Any]], fmt: str) -> Path:
    if fmt == "csv":
        path = out_dir / "metrics.csv"
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
    else:
        path = out_dir / "metrics.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in history))
    return path
