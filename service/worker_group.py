"""The processes of `python -m service --workers N` (service/workers.py) as seen from one of them.

They share a folder made by the parent, where `ready/<pid>` exists while that worker has its models loaded, and
the folder of prometheus_client's multiprocess files (service/metrics.py). A worker's /readyz answers for the
group: ready only when N live workers have loaded, whichever of them the kernel hands the probe to.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead


class WorkerGroup:
    def __init__(self, folder: Path, metrics_dir: Path, size: int):
        self.ready_dir, self.metrics_dir, self.size = folder / "ready", metrics_dir, size
        self.pid = os.getpid()

    def mark_ready(self) -> None:
        (self.ready_dir / str(self.pid)).touch()

    def leave(self) -> None:
        """At shutdown: no longer ready, and its live gauges no longer count."""
        (self.ready_dir / str(self.pid)).unlink(missing_ok=True)
        mark_process_dead(self.pid, str(self.metrics_dir))

    def ready_count(self) -> int:
        """Workers that have loaded and still run (a crashed one's file stays until its pid is gone)."""
        count = 0
        for entry in self.ready_dir.iterdir():
            try:
                os.kill(int(entry.name), 0)
            except (ValueError, ProcessLookupError):
                continue
            except PermissionError:  # the pid exists (under another user: not one of ours, but alive)
                pass
            count += 1
        return count
