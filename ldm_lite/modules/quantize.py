"""Vector quantization of the VQ-regularized first stage (paper Sec. 3; van den Oord et al. 2017,
"Neural Discrete Representation Learning", Eq. 3).

Each latent vector z_e(x) is replaced by its nearest codebook entry e_k; gradients pass through
the non-differentiable argmin with the straight-through estimator z_q = z + (e_k - z).detach()."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class VectorQuantizer(nn.Module):
    """Codebook of `n_e` vectors of size `e_dim`.

    Loss (van den Oord et al. Eq. 3, without the reconstruction term):
        ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2   (codebook term + commitment term).
    `legacy=True` reproduces the original code's weighting, which puts beta on the codebook term
    instead. With `restart_dead_codes`, entries unused for a while are moved onto random encoder
    outputs of the current batch during training (a common fix for codebook collapse).
    `remember` + `initialize_by_kmeans` start the codebook from k-means centroids of recent encoder
    outputs (Łańcucki et al. 2020, "Robust Training of Vector Quantized Bottleneck Models")."""

    def __init__(self, n_e: int, e_dim: int, beta: float = 0.25, remap: str | None = None,
                 unknown_index: str = "random", sane_index_shape: bool = False, legacy: bool = True,
                 restart_dead_codes: bool = False, usage_decay: float = 0.99,
                 dead_code_threshold: float = 0.1) -> None:
        super().__init__()
        if remap is not None:
            raise ValueError("remap (a file of used codebook indices) is not supported: set remap to null")
        self.n_e, self.e_dim, self.beta, self.legacy = n_e, e_dim, beta, legacy
        self.sane_index_shape = sane_index_shape
        self.restart_dead_codes = restart_dead_codes
        self.usage_decay, self.dead_code_threshold = usage_decay, dead_code_threshold
        self.embedding = nn.Embedding(n_e, e_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_e, 1.0 / n_e)
        # Exponential moving average of how often each code is chosen (not saved in checkpoints).
        self.register_buffer("usage", torch.full((n_e,), 1.0 / n_e), persistent=False)
        self.memory: list[torch.Tensor] = []  # recent encoder outputs for k-means (not saved)

    def nearest_indices(self, z_flat: torch.Tensor, codebook: torch.Tensor | None = None) -> torch.Tensor:
        """argmin_k ||z - e_k||^2 = argmin_k (||e_k||^2 - 2 z.e_k) for rows of z_flat (N, e_dim), over the
        codebook's entries (or the rows of `codebook`); computed in float32 whatever the dtypes."""
        codebook = (self.embedding.weight if codebook is None else codebook).float()
        z_flat = z_flat.float()
        # One fused addmm instead of a product, a scaling and a subtraction (about twice as fast on CPU).
        distances = torch.addmm(codebook.pow(2).sum(1)[None, :], z_flat, codebook.t(), alpha=-2.0)
        return distances.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, None, torch.Tensor]]:
        """z (B, e_dim, H, W) -> (z_q, loss, (perplexity, None, indices)); indices (B*H*W,) or (B, H, W)."""
        if z.shape[1] != self.e_dim:
            raise ValueError(f"latent has {z.shape[1]} channels but the codebook vectors have {self.e_dim}: "
                             "make embed_dim match the quant_conv output")
        batch, _, height, width = z.shape
        z = rearrange(z, "b c h w -> b h w c").contiguous()
        z_flat = rearrange(z, "b h w c -> (b h w) c")  # one e_dim-vector per latent pixel
        with torch.no_grad():
            indices = self.nearest_indices(z_flat)
        # The input's dtype, whatever the codebook's.
        z_q = rearrange(self.embedding(indices), "(b h w) c -> b h w c", b=batch, h=height, w=width).to(z.dtype)
        codebook_term = F.mse_loss(z_q, z.detach())
        commitment_term = F.mse_loss(z, z_q.detach())
        if self.legacy:
            loss = commitment_term + self.beta * codebook_term
        else:
            loss = codebook_term + self.beta * commitment_term
        z_q = z + (z_q - z).detach()  # straight-through estimator: d z_q / d z = identity
        counts = torch.bincount(indices, minlength=self.n_e).to(z.dtype)
        probabilities = counts / counts.sum()
        perplexity = torch.exp(-torch.sum(probabilities * torch.log(probabilities + 1e-10)))
        if self.training:
            self._track_usage(probabilities.detach(), z_flat.detach())
        z_q = rearrange(z_q, "b h w c -> b c h w").contiguous()
        if self.sane_index_shape:
            indices = rearrange(indices, "(b h w) -> b h w", b=batch, h=height, w=width)
        return z_q, loss, (perplexity, None, indices)

    @torch.no_grad()
    def _track_usage(self, probabilities: torch.Tensor, z_flat: torch.Tensor) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        probabilities = probabilities.float()
        if distributed:  # every rank must see the same usage and restart the same codes
            dist.all_reduce(probabilities)
            probabilities /= dist.get_world_size()
        self.usage.mul_(self.usage_decay).add_(probabilities, alpha=1.0 - self.usage_decay)
        if not self.restart_dead_codes:
            return
        dead = (self.usage < self.dead_code_threshold / self.n_e).nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        replacement = z_flat[torch.randint(0, z_flat.shape[0], (dead.numel(),), device=z_flat.device)].contiguous()
        if distributed:
            dist.broadcast(replacement, src=0)
        self.embedding.weight.data[dead] = replacement.to(self.embedding.weight.dtype)
        self.usage[dead] = 1.0 / self.n_e

    @torch.no_grad()
    def remember(self, z: torch.Tensor) -> None:
        """Keep the latest 4 * n_e latent vectors of z (B, e_dim, H, W) for `initialize_by_kmeans`."""
        self.memory.append(rearrange(z.detach(), "b c h w -> (b h w) c").float())
        kept = sum(len(rows) for rows in self.memory)
        while kept - len(self.memory[0]) >= 4 * self.n_e:
            kept -= len(self.memory.pop(0))

    @torch.no_grad()
    def initialize_by_kmeans(self, iterations: int = 10, chunk: int = 4096) -> None:
        """Set the codebook to k-means centroids (Lloyd's algorithm, seeded by a random draw) of the
        remembered latents; the memory is then emptied."""
        if not self.memory:
            raise RuntimeError("no latents to initialize the codebook from: call remember(z) first")
        points = torch.cat(self.memory)
        self.memory = []
        draw = torch.randperm(len(points), device=points.device)[: self.n_e]
        if len(draw) < self.n_e:  # fewer points than codes: repeat them with a little noise
            draw = draw[torch.randint(0, len(draw), (self.n_e,), device=points.device)]
        centroids = points[draw] + 1e-3 * points.std() * torch.randn(self.n_e, self.e_dim, device=points.device)
        for _ in range(iterations):
            assignment = torch.cat([self.nearest_indices(rows, centroids) for rows in points.split(chunk)])
            counts = torch.bincount(assignment, minlength=self.n_e).float()
            sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
            filled = counts > 0  # an empty cluster keeps its centroid
            centroids[filled] = sums[filled] / counts[filled, None]
        if dist.is_available() and dist.is_initialized():  # every rank starts from rank 0's codebook
            dist.broadcast(centroids, src=0)
        self.embedding.weight.data.copy_(centroids.to(self.embedding.weight.dtype))
        self.usage.fill_(1.0 / self.n_e)

    def codebook_usage(self) -> float:
        """Fraction of codes whose moving-average usage is above the dead-code threshold."""
        return (self.usage >= self.dead_code_threshold / self.n_e).float().mean().item()

    def get_codebook_entry(self, indices: torch.Tensor, shape: tuple[int, int, int, int] | None) -> torch.Tensor:
        """Code indices -> latent vectors; with `shape` = (B, H, W, C), returned as (B, C, H, W)."""
        z_q = self.embedding(indices.reshape(-1))
        if shape is not None:
            batch, height, width, _ = shape
            z_q = rearrange(z_q, "(b h w) c -> b c h w", b=batch, h=height, w=width).contiguous()
        return z_q
