"""Response bodies built directly from arrays are byte for byte what their pydantic models serialize."""

import numpy as np
import pytest

from service.schemas import EncodedImage, EncodeResponse, LatentLevel, encode_response_json

CONVERSION = {"format": "PNG", "source_mode": "L", "source_size": [28, 28], "mode": "L", "resized": False,
              "pixel_mapping": "x = (k + 0.5) / 256"}


@pytest.mark.parametrize(("n", "two_level", "samples", "seed"), [
    (1, False, 0, None), (5, False, 3, 7), (3, True, 0, None), (2, True, 2, 2**53 - 1)])
def test_encode_response_json_is_the_models_json(n, two_level, samples, seed):
    rng = np.random.default_rng(n)
    levels = [(rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32))
              for d in ((6, 3) if two_level else (4,))]
    draws = rng.standard_normal((n, samples, 6 if two_level else 4)) if samples else None
    conversions = [dict(CONVERSION, index_note=i) for i in range(n)]
    mu, logvar = levels[0]
    expected = EncodeResponse(model="m", latent_dim=mu.shape[1], seed=seed, results=[
        EncodedImage(index=i, mean=mu[i].tolist(), logvar=logvar[i].tolist(),
                     z=None if draws is None else draws[i].tolist(), conversion=conversions[i],
                     levels=[LatentLevel(name=f"z{j + 1}", mean=m[i].tolist(), logvar=v[i].tolist())
                             for j, (m, v) in enumerate(levels)] if two_level else None)
        for i in range(n)]).model_dump_json()
    assert encode_response_json("m", levels, draws, seed, conversions) == expected.encode()
