"""The model folder's pictures (training/plots.py) are the project's one grid, service.images.grid, in 8 bits."""

import numpy as np
import pytest
import torch

from service.images import grid
from training.plots import image_grid


@pytest.mark.parametrize("n, channels, ncols", [(64, 1, None), (7, 3, 3), (10, 1, 4)])
def test_image_grid_is_the_service_grid_clipped_to_8_bits_and_scaled_up(n, channels, ncols):
    images = torch.from_numpy(np.random.default_rng(n).uniform(-0.2, 1.2, (n, channels, 6, 5)).astype(np.float32))
    picture = np.asarray(image_grid(images, ncols, scale=2))
    expected = (np.clip(grid(images.numpy(), ncols), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)  # (C, H', W')
    expected = expected.repeat(2, axis=1).repeat(2, axis=2)  # nearest-neighbour x2
    np.testing.assert_array_equal(picture, expected[0] if channels == 1 else expected.transpose(1, 2, 0))
    cols = ncols or 8  # the default: a square
    rows = -(-n // cols)
    assert picture.shape[:2] == (2 * (rows * (6 + 2) + 2), 2 * (cols * (5 + 2) + 2))  # 2 px white padding
    assert np.all(picture[:4] == 255) and np.all(picture[:, :4] == 255)
