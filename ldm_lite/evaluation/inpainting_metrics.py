"""Inpainting metrics and the classical baselines a learned inpainting model must beat.

Metrics on NCHW images in [-1, 1] and N1HW masks with 1 = the hole (filled), 0 = kept:
- `hole_psnr`, `hole_ssim`: PSNR and SSIM computed from the hole's pixels only;
- `feature_distance`: the Euclidean distance between feature vectors (FeatureNet) of the whole
  completed image and of the original.
Baselines: OpenCV's `cv2.inpaint` with Telea's fast marching method (Telea 2004) and the
Navier-Stokes method (Bertalmio et al. 2001), and a fill with the mean colour of the kept pixels.
What a fill looks like, in numbers: `fill_colour_distances` (does the fill take the colour around
its hole?) and `hole_roughness` and `foreign_colour_fraction` (is it smooth, or colour noise?)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from ldm_lite.metrics import DATA_RANGE, _gaussian_window, masked_psnr


def _check_images_and_mask(result: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> None:
    if result.shape != original.shape or result.ndim != 4:
        raise ValueError(f"expected two NCHW images of the same shape, got {tuple(result.shape)} and {tuple(original.shape)}")
    expected = (original.shape[0], 1, *original.shape[-2:])
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask must have shape {expected} (N1HW, 1 = hole), got {tuple(mask.shape)}")


def hole_psnr(result: torch.Tensor, original: torch.Tensor, mask: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """PSNR in dB over the hole's pixels (mask = 1) only; NaN for an image without a hole."""
    _check_images_and_mask(result, original, mask)
    return masked_psnr(result, original, mask, reduce=reduce)


def masked_ssim_map(result: torch.Tensor, original: torch.Tensor, mask: torch.Tensor, window_size: int = 11,
                    sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004, Eq. 13; K1 = 0.01, K2 = 0.03, Gaussian window 11 / sigma
    1.5), NCHW, whose local statistics are weighted by the window restricted to mask = 1:
        mu_x = G*(m x) / G*m,  sigma_x^2 = G*(m x^2) / G*m - mu_x^2,  sigma_xy likewise.
    With an all-ones mask it is the plain SSIM map wherever the window fits inside the image."""
    _check_images_and_mask(result, original, mask)
    x, y, weight = result.float(), original.float(), mask.float()
    window = _gaussian_window(window_size, sigma, 1, x.device)

    def local_sum(image: torch.Tensor) -> torch.Tensor:  # zero padding: outside the image weighs 0 too
        return F.conv2d(image.reshape(-1, 1, *image.shape[-2:]), window, padding=window_size // 2).reshape(image.shape)

    weights = weight.expand_as(x)
    normaliser = local_sum(weight).clamp_min(1e-12).expand_as(x)
    mu_x, mu_y = local_sum(weights * x) / normaliser, local_sum(weights * y) / normaliser
    var_x = local_sum(weights * x * x) / normaliser - mu_x.pow(2)
    var_y = local_sum(weights * y * y) / normaliser - mu_y.pow(2)
    covariance = local_sum(weights * x * y) / normaliser - mu_x * mu_y
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))


def hole_ssim(result: torch.Tensor, original: torch.Tensor, mask: torch.Tensor, window_size: int = 11,
              sigma: float = 1.5, reduce: bool = True) -> torch.Tensor:
    """SSIM inside the hole: `masked_ssim_map` with the hole as the mask, averaged over the hole's
    pixels and the channels. Kept pixels get weight 0, so the result depends on the hole's pixels
    alone (a plain SSIM window would also see the identical kept pixels around a hole and flatter
    every method). NaN for an image without a hole."""
    ssim_map = masked_ssim_map(result, original, mask, window_size, sigma)
    weights = mask.float().expand_as(ssim_map)
    hole_pixels = weights.flatten(1).sum(1)
    values = (ssim_map * weights).flatten(1).sum(1) / hole_pixels.clamp_min(1)
    values = torch.where(hole_pixels > 0, values, torch.full_like(values, float("nan")))
    return values.mean() if reduce else values


def feature_distance(features: Callable[[torch.Tensor], torch.Tensor], result: torch.Tensor,
                     original: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """|f(result) - f(original)|_2 per image for a feature extractor f (e.g. FeatureNet.features)."""
    if result.shape != original.shape:
        raise ValueError(f"expected images of the same shape, got {tuple(result.shape)} and {tuple(original.shape)}")
    values = (features(result) - features(original)).norm(dim=1)
    return values.mean() if reduce else values


# ----------------------------------------------------------------------------- baselines

def _to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(pixels, "c h w -> h w c").numpy()


def _composite(filled: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The known pixels pasted back exactly, as every method's result."""
    return original * (1 - mask) + filled * mask


def opencv_inpaint(images: torch.Tensor, masks: torch.Tensor, method: str = "telea", radius: int = 3) -> torch.Tensor:
    """cv2.inpaint on each image ('telea': INPAINT_TELEA, 'navier-stokes': INPAINT_NS), `radius`
    pixels of neighbourhood; runs on 8-bit images, the kept pixels are pasted back in full precision."""
    import cv2

    flags = {"telea": cv2.INPAINT_TELEA, "navier-stokes": cv2.INPAINT_NS}
    if method not in flags:
        raise ValueError(f"OpenCV inpainting method must be one of {', '.join(flags)}, got {method!r}")
    _check_images_and_mask(images, images, masks)
    filled = []
    for image, mask in zip(images, masks):
        hole = (mask[0].detach().cpu().numpy() > 0.5).astype(np.uint8) * 255
        result = cv2.inpaint(np.ascontiguousarray(_to_uint8_hwc(image)), hole, radius, flags[method])
        filled.append(rearrange(torch.from_numpy(result.astype(np.float32) / 127.5 - 1), "h w c -> c h w"))
    return _composite(torch.stack(filled).to(images.device), images.float(), masks.float())


def mean_colour_fill(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The hole filled with the per-channel mean of each image's kept pixels (mid-grey, 0, when
    nothing is kept)."""
    _check_images_and_mask(images, images, masks)
    mean = region_mean_colours(images, 1 - masks.float()).nan_to_num(0.0)[:, :, None, None]
    return _composite(mean.expand_as(images), images.float(), masks.float())


# ----------------------------------------------------------------------------- what a fill looks like

def ring_around_hole(masks: torch.Tensor, width: int = 2) -> torch.Tensor:
    """The kept pixels within `width` pixels (in x and in y) of the hole: 1 there, 0 elsewhere (N1HW)."""
    masks = masks.float()
    grown = F.max_pool2d(masks, 2 * width + 1, stride=1, padding=width)
    return (grown - masks).clamp_min(0)


def region_mean_colours(images: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """(N, C): each image's mean colour over its region (N1HW, 1 = inside); NaN for an empty region."""
    regions = regions.float()
    return (images.float() * regions).sum((2, 3)) / regions.sum((2, 3))


def fill_colour_distances(result: torch.Tensor, masks: torch.Tensor, width: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Does each fill take the colour around its hole? Returns two (N,) tensors of RGB distances (in
    [-1, 1] units) from the fill's mean colour: to the mean colour of its own ring (`ring_around_hole`),
    and, as the reference, the mean distance to the other images' ring colours (colours that occur
    around some hole, only not this one). A fill that picks up its surroundings has the first smaller."""
    _check_images_and_mask(result, result, masks)
    if len(result) < 2:
        raise ValueError("the reference needs the rings of other images: give at least two images")
    fill = region_mean_colours(result, masks)
    ring = region_mean_colours(result, ring_around_hole(masks, width))
    distances = torch.cdist(fill, ring)  # [i, j]: fill of image i to the ring of image j
    own = distances.diagonal()
    others = (distances.sum(1) - own) / (len(result) - 1)
    return own, others


def hole_roughness(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,): the mean absolute colour step between neighbouring pixels (right and below) that both lie
    in the hole. 0 for a flat fill; large for colour noise; compare with the original's own value."""
    _check_images_and_mask(images, images, masks)
    images, masks = images.float(), masks.float()
    steps, counts = torch.zeros(len(images)), torch.zeros(len(images))
    for dimension in (2, 3):
        length = images.shape[dimension] - 1
        both = masks.narrow(dimension, 0, length) * masks.narrow(dimension, 1, length)
        step = (images.narrow(dimension, 1, length) - images.narrow(dimension, 0, length)).abs().mean(1, keepdim=True)
        steps += (step * both).sum((1, 2, 3)).cpu()
        counts += both.sum((1, 2, 3)).cpu()
    return steps / counts


def foreign_colour_fraction(images: torch.Tensor, masks: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """(N,): the fraction of hole pixels whose colour is farther than `threshold` (RGB distance in
    [-1, 1] units) from the colour of every kept pixel of the same image: colours the surroundings
    do not have, such as speckles of colour noise. Compare with the original's own value."""
    _check_images_and_mask(images, images, masks)
    fractions = []
    for image, mask in zip(images.float(), masks.bool()):
        colours = rearrange(image, "c h w -> (h w) c")
        hole, kept = colours[mask.flatten()], colours[~mask.flatten()]
        nearest = torch.cdist(hole, kept).amin(1) if len(kept) else torch.full((len(hole),), float("inf"))
        fractions.append((nearest > threshold).float().mean())
    return torch.stack(fractions).cpu()

BASELINES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "opencv telea": lambda images, masks: opencv_inpaint(images, masks, "telea"),
    "opencv navier-stokes": lambda images, masks: opencv_inpaint(images, masks, "navier-stokes"),
    "mean colour fill": mean_colour_fill,
}


def inpainting_scores(features: Callable[[torch.Tensor], torch.Tensor], result: torch.Tensor,
                      original: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean hole PSNR (dB), hole SSIM and whole-image feature distance of a batch of results."""
    return {
        "psnr_hole": float(hole_psnr(result, original, mask)),
        "ssim_hole": float(hole_ssim(result, original, mask)),
        "feature_distance": float(feature_distance(features, result, original)),
    }
