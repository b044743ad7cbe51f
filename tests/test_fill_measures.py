"""The fill measures of ldm_lite.evaluation.inpainting_metrics on images whose answers are known."""
from __future__ import annotations

import pytest
import torch

from ldm_lite.evaluation.inpainting_metrics import (fill_colour_distances, foreign_colour_fraction, hole_roughness,
                                                    region_mean_colours, ring_around_hole)


def square_hole(size: int = 9, start: int = 3, end: int = 6) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., start:end, start:end] = 1
    return mask


def test_ring_is_the_kept_band_around_the_hole():
    ring = ring_around_hole(square_hole(), width=1)
    assert ring.sum() == 5 * 5 - 3 * 3
    assert ring[0, 0, 2:7, 2:7].sum() == 16 and (ring * square_hole()).sum() == 0
    assert ring_around_hole(square_hole(), width=2).sum() == 7 * 7 - 3 * 3


def test_fill_in_the_colour_of_its_surroundings_is_closer_to_its_own_ring():
    colours = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    images = colours[:, :, None, None].expand(-1, -1, 9, 9).clone()  # three flat images: red, blue, green
    masks = square_hole().expand(3, -1, -1, -1)
    own, others = fill_colour_distances(images, masks)
    assert torch.allclose(own, torch.zeros(3)) and torch.allclose(others, torch.full((3,), 8 ** 0.5))
    images[0, :, 3:6, 3:6] = colours[1, :, None, None]  # the red image's hole painted blue
    own, others = fill_colour_distances(images, masks)
    assert own[0] == pytest.approx(8 ** 0.5) and others[0] == pytest.approx(8 ** 0.5 / 2)
    torch.testing.assert_close(region_mean_colours(images, masks)[0], colours[1])


def test_fill_colour_distances_needs_two_images():
    with pytest.raises(ValueError, match="at least two"):
        fill_colour_distances(torch.zeros(1, 3, 9, 9), square_hole())


def test_roughness_is_zero_for_a_flat_fill_and_large_for_noise():
    masks = square_hole().expand(2, -1, -1, -1)
    images = torch.zeros(2, 3, 9, 9)
    images[1, :, 3:6, 3:6] = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]])  # a checkerboard
    images[:, :, :3] = 1.0  # a step outside the hole does not count
    torch.testing.assert_close(hole_roughness(images, masks), torch.tensor([0.0, 2.0]))


def test_foreign_colours_are_hole_pixels_unlike_any_kept_pixel():
    masks = square_hole().expand(2, -1, -1, -1)
    images = torch.full((2, 3, 9, 9), -1.0)
    images[:, 0, :, :4] = 1.0  # red left part, black right part
    images[1, :, 3, 3:6] = torch.tensor([-1.0, 1.0, -1.0])[:, None]  # one row of the hole green: 3 of 9 pixels
    torch.testing.assert_close(foreign_colour_fraction(images, masks), torch.tensor([0.0, 3 / 9]))
