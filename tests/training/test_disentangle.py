"""The disentanglement study end to end on a small shapes set: three objectives trained, the table and the
traversal grids written, and the metrics in their ranges."""

import json

import pytest
from PIL import Image

from training.disentangle import VARIANTS, run, to_markdown


def test_disentangle_runs_all_three_objectives(tmp_path):
    results = run(tmp_path, epochs=3, data_overrides={"shapes_train": 3000, "shapes_test": 400}, warmup_steps=10,
                  runs=tmp_path / "runs")
    assert [r.variant for r in results] == ["vae", "beta-vae", "beta-tcvae"]
    for r in results:
        assert 0.0 <= r.mig <= 1.0 and set(r.mig_per_factor) == {"shape", "scale", "rotation", "pos_x", "pos_y"}
        assert r.elbo == pytest.approx(r.reconstruction - r.kl, rel=1e-5)
        assert r.elbo < 0 and r.kl > 0 and 0 <= r.active_dims <= 10
    # The weighted KL pushes the beta-VAE's rate below the plain VAE's.
    assert results[1].kl < results[0].kl
    stored = json.loads((tmp_path / "results.json").read_text())
    assert [row["variant"] for row in stored] == ["vae", "beta-vae", "beta-tcvae"]
    table = (tmp_path / "results.md").read_text().splitlines()
    assert len(table) == 2 + 3 and table[0].count("|") == table[1].count("|") == table[2].count("|")
    for v in VARIANTS:
        with Image.open(tmp_path / f"traversal_{v.name}.png") as img:
            assert img.size == (2 * (9 * 34 + 2), 2 * (10 * 34 + 2))  # 9 steps x 10 dims of 32 px tiles


def test_markdown_table_lists_every_factor():
    from training.disentangle import Result

    r = Result("vae", "VAE", 0.1, {"a": 0.2, "b": 0.0}, -10.0, -8.0, 2.0, 0.5, 3)
    text = to_markdown([r], ("a", "b"))
    assert "| VAE | 0.100 | 0.200 | 0.000 | -10.0 | -8.0 | 2.0 | 0.50 | 3 |" in text
