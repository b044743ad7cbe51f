"""Image quality metrics on NCHW tensors in [-1, 1]: PSNR and SSIM (Wang et al. 2004)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

DATA_RANGE = 2.0  # images live in [-1, 1]


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two NCHW tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, 10 log10(range^2 / MSE), per image (mean over the batch
    when `reduce`); range = 2 for [-1, 1] images."""
    _check_pair(x, y)
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(dim=1).clamp_min(1e-12)
    values = 10.0 * torch.log10(DATA_RANGE**2 / mse)
    return values.mean() if reduce else values


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    coordinates = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    profile = torch.exp(-coordinates.pow(2) / (2 * sigma**2))
    profile = profile / profile.sum()
    return (profile[:, None] * profile[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
         reduce: bool = True) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004, Eq. 13) with an 11x11 Gaussian window (sigma 1.5),
    K1 = 0.01, K2 = 0.03, averaged over the valid window positions and channels:
        SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))."""
    _check_pair(x, y)
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"images of size {tuple(x.shape[-2:])} are smaller than the SSIM window {window_size}: "
                         "pass a smaller window_size")
    x, y = x.float(), y.float()
    channels = x.shape[1]
    window = _gaussian_window(window_size, sigma, channels, x.device)

    def local_mean(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, window, groups=channels)

    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x.pow(2)
    var_y = local_mean(y * y) - mu_y.pow(2)
    covariance = local_mean(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    values = ssim_map.flatten(1).mean(dim=1)
    return values.mean() if reduce else values


def masked_psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """PSNR in dB over the pixels where `mask` (N1HW, 1 = counted) is 1, e.g. the hole of an
    inpainting result: MSE = sum(mask (x - y)^2) / (C sum(mask)), range 2 for [-1, 1] images.
    An image whose mask is empty gets NaN."""
    _check_pair(x, y)
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask must have shape {(x.shape[0], 1, *x.shape[-2:])} (N1HW), got {tuple(mask.shape)}")
    mask = mask.float()
    squared = (x.float() - y.float()).pow(2) * mask
    counted = mask.flatten(1).sum(dim=1) * x.shape[1]
    mse = squared.flatten(1).sum(dim=1) / counted
    values = 10.0 * torch.log10(DATA_RANGE**2 / mse.clamp_min(1e-12))
    values = torch.where(counted > 0, values, torch.full_like(values, float("nan")))
    return values.mean() if reduce else values
