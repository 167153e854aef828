"""The serving wing runs on onnxruntime alone: importing it must not pull in torch or training."""

import subprocess
import sys

CHECK = """
import sys
import service, service.manifest, service.model_card, service.__main__, service.app, service.core, service.v2
leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training'))
print(','.join(leaked))
"""


def test_service_imports_no_torch():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_model_card_of_a_missing_folder_is_an_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "service", "--check", "--model-dir", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "does not exist" in done.stderr
