"""Denoising diffusion (Ho et al. 2020, "DDPM", arXiv:2006.11239) and Latent Diffusion
(Rombach et al. 2022, arXiv:2112.10752): the forward noising process, the training objective, and
the LDM wrapper that runs diffusion in the latent space of a frozen autoencoder with a condition.

Forward process (Ho et al. Eq. 4): q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), abar_t = prod_s (1 - beta_s).
Objective (Ho et al. Eq. 14; LDM Eq. 2 and 3): E ||eps - eps_theta(z_t, t, tau(y))||^2.
Posterior (Ho et al. Eq. 6, 7): q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta~_t I)."""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ldm_lite.models.first_stage_cache import FirstStageCache
from ldm_lite.modules.distributions import DiagonalGaussianDistribution
from ldm_lite.modules.ema import LitEma
from ldm_lite.util import instantiate_from_config

CAPTION_KEYS = ("caption", "txt", "coordinates_bbox")


# ----------------------------------------------------------------------------- noise schedules

def make_beta_schedule(schedule: str, n_timestep: int, linear_start: float = 1e-4, linear_end: float = 2e-2,
                       cosine_s: float = 8e-3) -> np.ndarray:
    """beta_1..beta_T (float64).

    - "linear": the LDM schedule, linear in sqrt(beta): beta_t = (sqrt(start) + (t/(T-1)) (sqrt(end) - sqrt(start)))^2
    - "cosine": Nichol & Dhariwal 2021 Eq. 17: abar(t) = f(t)/f(0), f(t) = cos(((t/T + s)/(1 + s)) pi/2)^2,
      beta_t = 1 - abar_t / abar_{t-1}, clipped to 0.999
    - "sqrt_linear": beta linear from start to end (Ho et al. 2020's linear schedule)
    - "sqrt": sqrt of a linear ramp from start to end"""
    if n_timestep < 1:
        raise ValueError(f"n_timestep must be >= 1, got {n_timestep}")
    if schedule == "linear":
        betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, n_timestep, dtype=np.float64) ** 2
    elif schedule == "cosine":
        steps = np.arange(n_timestep + 1, dtype=np.float64) / n_timestep
        f = np.cos((steps + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        alphas_cumprod = f / f[0]
        betas = np.clip(1 - alphas_cumprod[1:] / alphas_cumprod[:-1], 0, 0.999)
    elif schedule == "sqrt_linear":
        betas = np.linspace(linear_start, linear_end, n_timestep, dtype=np.float64)
    elif schedule == "sqrt":
        betas = np.linspace(linear_start, linear_end, n_timestep, dtype=np.float64) ** 0.5
    else:
        raise ValueError(f"unknown beta_schedule '{schedule}': use linear, cosine, sqrt_linear or sqrt")
    return betas


def extract_into_tensor(values: torch.Tensor, t: torch.Tensor, x_shape: Sequence[int]) -> torch.Tensor:
    """values[t] reshaped to (B, 1, 1, ...) so that it broadcasts against a tensor of shape x_shape."""
    return values.gather(-1, t).reshape(t.shape[0], *([1] * (len(x_shape) - 1)))


def nchw(x: Any) -> torch.Tensor:
    """A batch image (B, H, W, C) or (B, H, W) array/tensor -> float NCHW tensor."""
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, H, W, C), got {tuple(x.shape)}")
    return rearrange(x, "b h w c -> b c h w").contiguous().float()


# ----------------------------------------------------------------------------- the denoiser wrapper

class DiffusionWrapper(nn.Module):
    """Holds the UNet (`diffusion_model`) and routes the condition by `conditioning_key`:
    None (unconditional), "concat" (channels appended to x_t), "crossattn" (context tokens),
    "hybrid" (both), "adm" (class labels y added to the timestep embedding)."""

    KEYS = (None, "concat", "crossattn", "hybrid", "adm")

    def __init__(self, diff_model_config: Mapping[str, Any], conditioning_key: str | None):
        super().__init__()
        if conditioning_key not in self.KEYS:
            raise ValueError(f"conditioning_key must be one of {self.KEYS}, got '{conditioning_key}'")
        self.diffusion_model = instantiate_from_config(diff_model_config)
        self.conditioning_key = conditioning_key

    def forward(self, x: torch.Tensor, t: torch.Tensor, c_concat: list | None = None,
                c_crossattn: list | None = None) -> torch.Tensor:
        key = self.conditioning_key
        if key is None:
            return self.diffusion_model(x, t)
        if key in ("concat", "hybrid") and not c_concat:
            raise ValueError(f"conditioning_key '{key}' needs c_concat (tensors concatenated to x_t on channels)")
        if key in ("crossattn", "hybrid", "adm") and not c_crossattn:
            raise ValueError(f"conditioning_key '{key}' needs c_crossattn (context tokens or class labels)")
        if key == "concat":
            return self.diffusion_model(torch.cat([x, *c_concat], dim=1), t)
        if key == "crossattn":
            return self.diffusion_model(x, t, context=torch.cat(c_crossattn, dim=1))
        if key == "hybrid":
            return self.diffusion_model(torch.cat([x, *c_concat], dim=1), t, context=torch.cat(c_crossattn, dim=1))
        return self.diffusion_model(x, t, y=c_crossattn[0])


# ----------------------------------------------------------------------------- DDPM

class DDPM(nn.Module):
    """Gaussian diffusion on images (pixel space) with the training objective of Ho et al. 2020.

    Constructor parameters follow the original `ldm.models.diffusion.ddpm.DDPM`; ldm-lite adds
    `min_snr_gamma` (min-SNR-gamma loss weighting, Hang et al. 2023) and `ema_decay`."""

    learning_rate: float = 1e-4

    def __init__(
        self,
        unet_config: Mapping[str, Any],
        timesteps: int = 1000,
        beta_schedule: str = "linear",
        loss_type: str = "l2",
        ckpt_path: str | None = None,
        ignore_keys: Sequence[str] = (),
        load_only_unet: bool = False,
        monitor: str = "val/loss",
        use_ema: bool = True,
        first_stage_key: str = "image",
        image_size: int = 256,
        channels: int = 3,
        log_every_t: int = 100,
        clip_denoised: bool = True,
        linear_start: float = 1e-4,
        linear_end: float = 2e-2,
        cosine_s: float = 8e-3,
        given_betas: Sequence[float] | None = None,
        original_elbo_weight: float = 0.0,
        v_posterior: float = 0.0,
        l_simple_weight: float = 1.0,
        conditioning_key: str | None = None,
        parameterization: str = "eps",
        scheduler_config: Mapping[str, Any] | None = None,
        use_positional_encodings: bool = False,
        learn_logvar: bool = False,
        logvar_init: float = 0.0,
        min_snr_gamma: float | None = None,
        ema_decay: float = 0.9999,
    ):
        super().__init__()
        if parameterization not in ("eps", "x0", "v"):
            raise ValueError(f"parameterization must be 'eps', 'x0' or 'v', got '{parameterization}'")
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', got '{loss_type}'")
        if use_positional_encodings:
            raise ValueError("use_positional_encodings is not supported: set it to false")
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be positive (5 is the paper's choice), got {min_snr_gamma}")
        self.parameterization = parameterization
        self.loss_type = loss_type
        self.monitor = monitor
        self.first_stage_key = first_stage_key
        self.image_size = image_size
        self.channels = channels
        self.log_every_t = log_every_t
        self.clip_denoised = clip_denoised
        self.original_elbo_weight = original_elbo_weight
        self.v_posterior = v_posterior
        self.l_simple_weight = l_simple_weight
        self.min_snr_gamma = min_snr_gamma
        self.scheduler_config = scheduler_config
        self.model = DiffusionWrapper(unet_config, conditioning_key)
        self.use_ema = use_ema
        if use_ema:
            self.model_ema = LitEma(self.model, decay=ema_decay)
        self._ema_depth = 0
        self.register_schedule(given_betas, beta_schedule, timesteps, linear_start, linear_end, cosine_s)
        self.learn_logvar = learn_logvar
        logvar = torch.full((self.num_timesteps,), float(logvar_init))
        if learn_logvar:
            self.logvar = nn.Parameter(logvar)
        else:  # a constant: not part of the checkpoint layout
            self.register_buffer("logvar", logvar, persistent=False)
        self.restarted_from_ckpt = False
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys, only_model=load_only_unet)

    # ---------------------------------------------------------------- schedule

    def register_schedule(self, given_betas: Sequence[float] | None = None, beta_schedule: str = "linear",
                          timesteps: int = 1000, linear_start: float = 1e-4, linear_end: float = 2e-2,
                          cosine_s: float = 8e-3) -> None:
        """Compute the schedule in float64 and register the twelve buffers of the original layout."""
        if given_betas is not None:
            betas = np.asarray(given_betas, dtype=np.float64)
        else:
            betas = make_beta_schedule(beta_schedule, timesteps, linear_start, linear_end, cosine_s)
        alphas = 1.0 - betas
        alphas_cumprod = np.cumprod(alphas)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        self.num_timesteps = int(betas.shape[0])
        self.linear_start, self.linear_end = linear_start, linear_end

        def register(name: str, value: np.ndarray) -> None:
            tensor = torch.tensor(value, dtype=torch.float32)
            if name in self._buffers:
                self._buffers[name] = tensor.to(self._buffers[name].device)
            else:
                self.register_buffer(name, tensor)

        register("betas", betas)
        register("alphas_cumprod", alphas_cumprod)
        register("alphas_cumprod_prev", alphas_cumprod_prev)
        # q(x_t | x_0), Ho et al. Eq. 4
        register("sqrt_alphas_cumprod", np.sqrt(alphas_cumprod))
        register("sqrt_one_minus_alphas_cumprod", np.sqrt(1.0 - alphas_cumprod))
        register("log_one_minus_alphas_cumprod", np.log(1.0 - alphas_cumprod))
        register("sqrt_recip_alphas_cumprod", np.sqrt(1.0 / alphas_cumprod))
        register("sqrt_recipm1_alphas_cumprod", np.sqrt(1.0 / alphas_cumprod - 1))
        # q(x_{t-1} | x_t, x_0), Ho et al. Eq. 7; v_posterior mixes beta~_t with beta_t (sigma_t^2 choices, Sec. 3.2)
        posterior_variance = ((1 - self.v_posterior) * betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
                              + self.v_posterior * betas)
        register("posterior_variance", posterior_variance)
        register("posterior_log_variance_clipped", np.log(np.maximum(posterior_variance, 1e-20)))
        register("posterior_mean_coef1", betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod))
        register("posterior_mean_coef2", (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod))
        # Weights of the variational bound term L_t (Ho et al. Eq. 5, 12) relative to the simple loss.
        if self.parameterization == "eps":
            lvlb_weights = betas ** 2 / (2 * np.maximum(posterior_variance, 1e-20) * alphas * (1 - alphas_cumprod))
        elif self.parameterization == "x0":
            lvlb_weights = 0.5 * np.sqrt(alphas_cumprod) / (2.0 * (1 - alphas_cumprod))
        else:
            lvlb_weights = np.ones_like(betas)
        if lvlb_weights.shape[0] > 1:
            lvlb_weights[0] = lvlb_weights[1]  # t = 0 has posterior variance 0
        lvlb = torch.tensor(lvlb_weights, dtype=torch.float32)
        if "lvlb_weights" in self._buffers:
            self._buffers["lvlb_weights"] = lvlb.to(self._buffers["lvlb_weights"].device)
        else:
            self.register_buffer("lvlb_weights", lvlb, persistent=False)

    # ---------------------------------------------------------------- forward process and parameterisations

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Ho et al. Eq. 4)."""
        noise = torch.randn_like(x_start) if noise is None else noise
        return (extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
                + extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise)

    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and log-variance of q(x_t | x_0)."""
        mean = extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
        variance = extract_into_tensor(1.0 - self.alphas_cumprod, t, x_start.shape)
        return mean, variance, extract_into_tensor(self.log_one_minus_alphas_cumprod, t, x_start.shape)

    def predict_start_from_noise(self, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_0 = x_t / sqrt(abar_t) - sqrt(1/abar_t - 1) eps (Eq. 4 solved for x_0)."""
        return (extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
                - extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * noise)

    def get_v(self, x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022, Sec. 4)."""
        return (extract_into_tensor(self.sqrt_alphas_cumprod, t, x.shape) * noise
                - extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x.shape) * x)

    def predict_start_from_z_and_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v."""
        return (extract_into_tensor(self.sqrt_alphas_cumprod, t, x_t.shape) * x_t
                - extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * v)

    def predict_eps_from_z_and_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t."""
        return (extract_into_tensor(self.sqrt_alphas_cumprod, t, x_t.shape) * v
                + extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * x_t)

    def q_posterior(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (Ho et al. Eq. 6, 7)."""
        mean = (extract_into_tensor(self.posterior_mean_coef1, t, x_t.shape) * x_start
                + extract_into_tensor(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        return (mean, extract_into_tensor(self.posterior_variance, t, x_t.shape),
                extract_into_tensor(self.posterior_log_variance_clipped, t, x_t.shape))

    def model_output_to_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's prediction of x_0, whatever the parameterisation."""
        if self.parameterization == "eps":
            return self.predict_start_from_noise(x_t, t, model_output)
        if self.parameterization == "v":
            return self.predict_start_from_z_and_v(x_t, t, model_output)
        return model_output

    def training_target(self, x_start: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network regresses: eps, x_0 or v."""
        if self.parameterization == "eps":
            return noise
        if self.parameterization == "x0":
            return x_start
        return self.get_v(x_start, noise, t)

    # ---------------------------------------------------------------- loss

    def get_loss(self, pred: torch.Tensor, target: torch.Tensor, mean: bool = True) -> torch.Tensor:
        if self.loss_type == "l1":
            loss = (target - pred).abs()
        else:
            loss = F.mse_loss(target, pred, reduction="none")
        return loss.mean() if mean else loss

    def snr_weights(self, t: torch.Tensor) -> torch.Tensor:
        """Min-SNR-gamma weights (Hang et al. 2023, Eq. 9 and Sec. 3.4): min(SNR_t, gamma) expressed in
        the parameterisation's own loss: / SNR_t for eps, / (SNR_t + 1) for v, x1 for x0."""
        alphas_cumprod = self.alphas_cumprod[t]
        snr = alphas_cumprod / (1 - alphas_cumprod)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.parameterization == "eps":
            return clipped / snr
        if self.parameterization == "v":
            return clipped / (snr + 1)
        return clipped

    def apply_model(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """The network output (eps, x_0 or v prediction) for x_t at timesteps t."""
        return self.model(x_noisy, t)

    def p_losses(self, x_start: torch.Tensor, cond: Any, t: torch.Tensor, noise: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss at timesteps t: L_simple (Ho et al. Eq. 14), divided by exp(logvar_t) + logvar_t
        (learned per-timestep uncertainty, Kendall & Gal 2017), plus original_elbo_weight * L_vlb."""
        noise = torch.randn_like(x_start) if noise is None else noise
        x_noisy = self.q_sample(x_start, t, noise)
        model_output = self.apply_model(x_noisy, t, cond)
        target = self.training_target(x_start, noise, t)
        prefix = "train" if self.training else "val"

        per_sample = self.get_loss(model_output.float(), target.float(), mean=False).mean(dim=list(range(1, x_start.ndim)))
        loss_dict = {f"{prefix}/loss_simple": per_sample.mean()}
        loss_simple = per_sample * self.snr_weights(t) if self.min_snr_gamma is not None else per_sample
        logvar_t = self.logvar[t]
        loss = loss_simple / torch.exp(logvar_t) + logvar_t
        if self.learn_logvar:
            loss_dict[f"{prefix}/loss_gamma"] = loss.mean()
            loss_dict["logvar"] = self.logvar.detach().mean()
        loss = self.l_simple_weight * loss.mean()
        loss_vlb = (self.lvlb_weights[t] * per_sample).mean()
        loss_dict[f"{prefix}/loss_vlb"] = loss_vlb
        loss = loss + self.original_elbo_weight * loss_vlb
        loss_dict[f"{prefix}/loss"] = loss
        return loss, loss_dict

    # ---------------------------------------------------------------- data and steps

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def image_input(self, batch: Mapping[str, Any], key: str) -> torch.Tensor:
        """batch[key] (B, H, W, C) -> NCHW float on the model's device (the original's convention)."""
        if key not in batch:
            raise KeyError(f"batch has no '{key}' (keys: {sorted(batch)}): set first_stage_key / cond_stage_key")
        return nchw(batch[key]).to(self.device)

    def get_input(self, batch: Mapping[str, Any], k: str) -> torch.Tensor:
        return self.image_input(batch, k)

    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """t ~ Uniform{0, ..., T-1}."""
        return torch.randint(0, self.num_timesteps, (batch_size,), generator=generator).to(self.device)

    def shared_step(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.get_input(batch, self.first_stage_key)
        t = self.sample_timesteps(x.shape[0])
        return self.p_losses(x, None, t)

    def training_step(self, batch: Mapping[str, Any], optimizer_index: int = 0, global_step: int = 0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        loss, loss_dict = self.shared_step(batch)
        return loss, {key: float(value.detach()) for key, value in loss_dict.items()}

    @torch.no_grad()
    def validation_step(self, batch: Mapping[str, Any], global_step: int = 0) -> dict[str, float]:
        """Losses with fixed timesteps and noise (seeded), so successive validations are comparable.
        With EMA, the `_ema` entries are those of the averaged weights."""
        logs = self._seeded_losses(batch)
        if self.use_ema:
            if self._ema_depth:  # the caller already swapped in the EMA weights
                logs.update({f"{key}_ema": value for key, value in logs.items()})
            else:
                with self.ema_scope():
                    logs.update({f"{key}_ema": value for key, value in self._seeded_losses(batch).items()})
        return logs

    def _seeded_losses(self, batch: Mapping[str, Any]) -> dict[str, float]:
        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            _, loss_dict = self.shared_step(batch)
        finally:
            torch.random.set_rng_state(state)
        return {key.replace("train/", "val/"): float(value) for key, value in loss_dict.items()}

    def on_train_batch_end(self) -> None:
        """EMA update after each optimizer step."""
        if self.use_ema:
            self.model_ema(self.model)

    @contextmanager
    def ema_scope(self, context: str | None = None) -> Iterator[None]:
        """Temporarily swap the EMA weights into the model (nested scopes are no-ops)."""
        if not self.use_ema or self._ema_depth:
            self._ema_depth += 1
            try:
                yield
            finally:
                self._ema_depth -= 1
            return
        self.model_ema.store(self.model.parameters())
        self.model_ema.copy_to(self.model)
        self._ema_depth += 1
        if context is not None:
            print(f"{context}: switched to EMA weights")
        try:
            yield
        finally:
            self._ema_depth -= 1
            self.model_ema.restore(self.model.parameters())
            if context is not None:
                print(f"{context}: restored training weights")

    def trainable_parameters(self) -> list[nn.Parameter]:
        parameters = list(self.model.parameters())
        if self.learn_logvar:
            parameters.append(self.logvar)
        return parameters

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """AdamW (Loshchilov & Hutter 2019) over the UNet (and the learned logvar); the fused kernel updates all
        tensors in one pass (on a 2-core CPU 5x faster than torch's default per-tensor loop)."""
        return [torch.optim.AdamW(self.trainable_parameters(), lr=self.learning_rate, fused=True)]

    def init_from_ckpt(self, path: str, ignore_keys: Sequence[str] = (), only_model: bool = False) -> None:
        """Load weights (safetensors or a safely unpickled .ckpt), dropping keys under `ignore_keys`."""
        from ldm_lite.checkpoint import load_state_dict_file

        state_dict = load_state_dict_file(path)
        state_dict = {key: value for key, value in state_dict.items()
                      if not any(key.startswith(prefix) for prefix in ignore_keys)}
        target = self.model if only_model else self
        if only_model:
            state_dict = {key[len("model."):]: value for key, value in state_dict.items() if key.startswith("model.")}
        missing, unexpected = target.load_state_dict(state_dict, strict=False)
        if self.use_ema and not any(key.startswith("model_ema.") for key in state_dict):
            # an exported file holds the (EMA) weights alone: the average restarts from them, not from
            # the random initialisation it was built from
            self.model_ema = LitEma(self.model, decay=float(self.model_ema.decay))
        self.restarted_from_ckpt = True
        print(f"restored {type(self).__name__} from {path}: {len(missing)} missing, {len(unexpected)} unexpected keys")

    # ---------------------------------------------------------------- sampling (ancestral, Ho et al. Algorithm 2)

    def denoise_output(self, x: torch.Tensor, t: torch.Tensor, cond: Any, unconditional_conditioning: Any = None,
                       guidance_scale: float = 1.0) -> torch.Tensor:
        """Model output, with classifier-free guidance (Ho & Salimans 2022, Eq. 6) when an unconditional
        conditioning is given: out = out_uncond + s (out_cond - out_uncond)."""
        if unconditional_conditioning is None or guidance_scale == 1.0:
            return self.apply_model(x, t, cond)
        out_cond = self.apply_model(x, t, cond)
        out_uncond = self.apply_model(x, t, unconditional_conditioning)
        return out_uncond + guidance_scale * (out_cond - out_uncond)

    @torch.no_grad()
    def p_sample_loop(self, cond: Any, shape: Sequence[int], num_steps: int | None = None, x_T: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, return_intermediates: bool = False,
                      unconditional_conditioning: Any = None, guidance_scale: float = 1.0,
                      clip_denoised: bool | None = None) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Ancestral sampling x_T ~ N(0, I) -> x_0 with p(x_{t'} | x_t) = q(x_{t'} | x_t, x_0 = x0_theta(x_t)).

        With `num_steps` < T the chain visits an evenly spaced subset of timesteps; the posterior is
        then that of the respaced process, alpha_t := abar_t / abar_{t'} (Nichol & Dhariwal 2021, Sec. 4).
        With all T steps this is exactly Algorithm 2 of Ho et al. with sigma_t^2 = beta~_t.
        Intermediates are the x_0 predictions at every `log_every_t`-th visited step (progressive denoising)."""
        num_steps = num_steps or self.num_timesteps
        if not 1 <= num_steps <= self.num_timesteps:
            raise ValueError(f"num_steps must lie in [1, {self.num_timesteps}], got {num_steps}")
        clip_denoised = self.clip_denoised if clip_denoised is None else clip_denoised
        timesteps = np.unique(np.linspace(0, self.num_timesteps - 1, num_steps).round().astype(np.int64))[::-1]
        x = torch.randn(tuple(shape), generator=generator).to(self.device) if x_T is None else x_T
        intermediates = []
        log_every = max(1, len(timesteps) // 8)
        for index, step in enumerate(timesteps):
            t = torch.full((x.shape[0],), int(step), device=self.device, dtype=torch.long)
            output = self.denoise_output(x, t, cond, unconditional_conditioning, guidance_scale)
            x0 = self.model_output_to_x0(output.float(), x, t)
            if clip_denoised:
                x0 = x0.clamp(-1, 1)
            if index % log_every == 0 or index == len(timesteps) - 1:
                intermediates.append(x0)
            previous = int(timesteps[index + 1]) if index + 1 < len(timesteps) else -1
            if previous < 0:
                x = x0
                break
            alpha_bar = float(self.alphas_cumprod[step])
            alpha_bar_prev = float(self.alphas_cumprod[previous])
            beta = 1 - alpha_bar / alpha_bar_prev
            coef1 = math.sqrt(alpha_bar_prev) * beta / (1 - alpha_bar)
            coef2 = math.sqrt(1 - beta) * (1 - alpha_bar_prev) / (1 - alpha_bar)
            variance = beta * (1 - alpha_bar_prev) / (1 - alpha_bar)
            noise = torch.randn(x.shape, generator=generator).to(x.device)
            x = coef1 * x0 + coef2 * x + math.sqrt(variance) * noise
        return (x, intermediates) if return_intermediates else x

    @torch.no_grad()
    def sample(self, batch_size: int = 16, cond: Any = None, num_steps: int | None = None,
               generator: torch.Generator | None = None, return_intermediates: bool = False):
        """Draw `batch_size` samples of shape (channels, image_size, image_size)."""
        shape = (batch_size, self.channels, self.image_size, self.image_size)
        return self.p_sample_loop(cond, shape, num_steps, generator=generator, return_intermediates=return_intermediates)

    @torch.no_grad()
    def log_images(self, batch: Mapping[str, Any], max_images: int = 8, sample: bool = True,
                   sample_steps: int = 50) -> dict[str, torch.Tensor]:
        """inputs, diffusion_row, samples, progressive_row (rows as in `square_rows`)."""
        x = self.get_input(batch, self.first_stage_key)[:max_images]
        logs = {"inputs": x, "diffusion_row": self._diffusion_row(x)}
        if sample:
            with self.ema_scope():
                samples, intermediates = self.sample(len(x), num_steps=sample_steps, return_intermediates=True)
            logs["samples"] = samples
            logs["progressive_row"] = square_rows(intermediates)
        return logs

    def _diffusion_row(self, x_start: torch.Tensor) -> torch.Tensor:
        """n = len(x_start) samples, each noised at n evenly spaced t (one row per sample, t rising)."""
        timesteps = torch.linspace(0, self.num_timesteps - 1, len(x_start)).long().to(self.device)
        return square_rows([self.q_sample(x_start, t.repeat(len(x_start)), torch.randn_like(x_start)) for t in timesteps])


# ----------------------------------------------------------------------------- Latent Diffusion

class LatentDiffusion(DDPM):
    """Diffusion in the latent space z = scale_factor * E(x) of a frozen first stage, conditioned on
    tau_theta(y) (Rombach et al. 2022, Sec. 3.2-3.3).

    `cond_stage_config`: "__is_unconditional__" (no condition), "__is_first_stage__" (the first stage
    encodes the condition, e.g. the masked image for inpainting) or a {target, params} encoder.
    `cond_drop_prob`: probability of replacing a training sample's condition by the null condition
    (empty caption "", null class `ClassEmbedder.null_index`, or for "adm" the last UNet class), which
    trains the unconditional model used by classifier-free guidance (Ho & Salimans 2022). Image-like
    (concat) conditions are never dropped.
    `cache_first_stage`: keep each training image's first-stage encoding (`FirstStageCache`), so that the
    frozen encoder runs once per image instead of once per step; the KL latent is still sampled each step.

    Inpainting (`cond_stage_key: masked_image`, concat): the condition is the scaled first-stage latent
    of the masked image concatenated with the mask resized to the latent size and mapped to {-1, 1}
    (+1 = region to fill), the layout of the original inpainting model (UNet in_channels = 2 * z + 1)."""

    def __init__(
        self,
        first_stage_config: Mapping[str, Any],
        cond_stage_config: Mapping[str, Any] | str,
        num_timesteps_cond: int | None = None,
        cond_stage_key: str = "image",
        cond_stage_trainable: bool = False,
        concat_mode: bool = True,
        cond_stage_forward: str | None = None,
        conditioning_key: str | None = None,
        scale_factor: float = 1.0,
        scale_by_std: bool = False,
        cond_drop_prob: float = 0.0,
        cache_first_stage: bool = False,
        *args: Any,
        **kwargs: Any,
    ):
        if num_timesteps_cond not in (None, 1):
            raise ValueError("num_timesteps_cond > 1 (a shortened condition schedule) is not supported: set it to 1")
        if not 0.0 <= cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must lie in [0, 1), got {cond_drop_prob}")
        if conditioning_key is None:
            conditioning_key = "concat" if concat_mode else "crossattn"
        if cond_stage_config == "__is_unconditional__":
            conditioning_key = None
        if cond_drop_prob > 0 and conditioning_key in (None, "concat"):
            raise ValueError(f"cond_drop_prob needs a caption or class condition; conditioning_key is '{conditioning_key}'")
        ckpt_path = kwargs.pop("ckpt_path", None)
        ignore_keys = kwargs.pop("ignore_keys", ())
        super().__init__(*args, conditioning_key=conditioning_key, **kwargs)
        self.concat_mode = concat_mode
        self.cond_stage_trainable = cond_stage_trainable
        self.cond_stage_key = cond_stage_key
        self.cond_stage_forward = cond_stage_forward
        self.cond_drop_prob = cond_drop_prob
        self.scale_by_std = scale_by_std
        if scale_by_std:  # a buffer, so the value computed on the first batch is saved and restored
            self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))
        else:
            self.scale_factor = float(scale_factor)
        self.instantiate_first_stage(first_stage_config)
        self.instantiate_cond_stage(cond_stage_config)
        self.first_stage_cache = FirstStageCache() if cache_first_stage else None
        from ldm_lite.models.autoencoder import IdentityFirstStage

        self.clip_denoised = isinstance(self.first_stage_model, IdentityFirstStage)  # latents are not in [-1, 1]
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys)

    @property
    def conditioning_key(self) -> str | None:
        return self.model.conditioning_key

    # ---------------------------------------------------------------- stages

    def instantiate_first_stage(self, config: Mapping[str, Any]) -> None:
        """Build the frozen autoencoder. Its training loss is never used here, so it is not built."""
        config = _plain(config)
        params = dict(config.get("params") or {})
        if "lossconfig" in params:
            params["lossconfig"] = {"target": "torch.nn.Identity"}
        if params.get("ckpt_path"):
            params["ckpt_path"] = str(resolve_weights_path(params["ckpt_path"]))
        model = instantiate_from_config({"target": config["target"], "params": params})
        self.first_stage_model = model.eval()
        self.first_stage_model.requires_grad_(False)

    def instantiate_cond_stage(self, config: Mapping[str, Any] | str) -> None:
        if config == "__is_first_stage__":
            if self.cond_stage_trainable:
                raise ValueError("cond_stage_trainable must be false with __is_first_stage__ (the first stage is frozen)")
            self.cond_stage_model = self.first_stage_model
        elif config == "__is_unconditional__":
            self.cond_stage_model = None
        else:
            self.cond_stage_model = instantiate_from_config(_plain(config))
            if not self.cond_stage_trainable:
                self.cond_stage_model.eval()
                self.cond_stage_model.requires_grad_(False)

    def train(self, mode: bool = True) -> "LatentDiffusion":
        """Like nn.Module.train, but frozen stages stay in eval mode."""
        super().train(mode)
        self.first_stage_model.eval()
        if self.cond_stage_model is not None and not self.cond_stage_trainable:
            self.cond_stage_model.eval()
        return self

    # ---------------------------------------------------------------- first stage

    @torch.no_grad()
    def encode_first_stage(self, x: torch.Tensor) -> torch.Tensor | DiagonalGaussianDistribution:
        """E(x): a posterior (KL) or the pre-quantization latent (VQ) or x itself (identity)."""
        return self.first_stage_model.encode(x)

    def get_first_stage_encoding(self, encoder_posterior: torch.Tensor | DiagonalGaussianDistribution) -> torch.Tensor:
        """z = scale_factor * (a sample of the posterior, or the latent itself)."""
        if isinstance(encoder_posterior, DiagonalGaussianDistribution):
            z = encoder_posterior.sample()
        elif torch.is_tensor(encoder_posterior):
            z = encoder_posterior
        else:
            raise TypeError(f"encoder output of type {type(encoder_posterior).__name__} is not supported")
        return self.scale_factor * z

    @torch.no_grad()
    def decode_first_stage(self, z: torch.Tensor, force_not_quantize: bool = False) -> torch.Tensor:
        """D(z / scale_factor) -> image in about [-1, 1]."""
        from ldm_lite.models.autoencoder import VQModelInterface

        z = z / self.scale_factor
        if isinstance(self.first_stage_model, VQModelInterface):
            return self.first_stage_model.decode(z, force_not_quantize=force_not_quantize)
        return self.first_stage_model.decode(z)

    @torch.no_grad()
    def set_scale_factor_from_latents(self, x: torch.Tensor) -> float:
        """scale_by_std: scale_factor = 1 / std(z) over a batch, so the diffusion sees unit-variance latents
        (LDM Sec. 4.3.2 / App. G). Stored in the `scale_factor` buffer (saved with the checkpoint)."""
        self.scale_factor.fill_(1.0)
        z = self.get_first_stage_encoding(self.encode_first_stage(x)).detach()
        self.scale_factor.fill_(1.0 / z.flatten().std().item())
        return float(self.scale_factor)

    # ---------------------------------------------------------------- conditioning

    def get_learned_conditioning(self, c: Any) -> Any:
        """tau_theta(y): the condition encoder applied to raw conditions (captions, labels, images)."""
        if self.cond_stage_model is None:
            return c
        if self.cond_stage_forward is not None:
            c = getattr(self.cond_stage_model, self.cond_stage_forward)(c)
        elif callable(getattr(self.cond_stage_model, "encode", None)):
            c = self.cond_stage_model.encode(c)
        else:
            c = self.cond_stage_model(c)
        return c.mode() if isinstance(c, DiagonalGaussianDistribution) else c

    @torch.no_grad()
    def get_inpainting_condition(self, masked_image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Concat condition for inpainting: [scale_factor * E(masked image) (posterior mode for KL),
        2 * mask - 1 resized (nearest) to the latent size]. mask: (B, 1, H, W), 1 = fill."""
        encoded = self.encode_first_stage(masked_image)
        latent = encoded.mode() if isinstance(encoded, DiagonalGaussianDistribution) else encoded
        latent = self.scale_factor * latent
        small_mask = F.interpolate(mask.float(), size=latent.shape[-2:], mode="nearest")
        return torch.cat([latent, 2.0 * small_mask - 1.0], dim=1)

    def null_condition(self, raw: Any) -> Any:
        """The raw "no condition" matching `raw`: "" for captions, the null class for labels."""
        if isinstance(raw, (list, tuple)):
            return [""] * len(raw)
        if torch.is_tensor(raw) and not raw.is_floating_point():
            return torch.full_like(raw, self.null_class_index())
        raise TypeError(f"no null condition for a {type(raw).__name__} condition")

    def null_class_index(self) -> int:
        if self.conditioning_key == "adm":
            return self.model.diffusion_model.num_classes - 1
        index = getattr(self.cond_stage_model, "null_index", None)
        if index is None:
            raise ValueError("dropping class conditions needs a null class: set null_class: true in the ClassEmbedder params")
        return index

    def drop_condition(self, raw: Any, generator: torch.Generator | None = None) -> Any:
        """Replace each sample's raw condition by the null one with probability cond_drop_prob."""
        if self.cond_drop_prob == 0:
            return raw
        drop = torch.rand(len(raw), generator=generator) < self.cond_drop_prob
        null = self.null_condition(raw)
        if isinstance(raw, (list, tuple)):
            return [n if d else r for r, n, d in zip(raw, null, drop.tolist())]
        return torch.where(drop.to(raw.device), null, raw)

    def get_unconditional_conditioning(self, batch_size: int) -> Any:
        """The learned null condition for `batch_size` samples, in the form `apply_model` takes."""
        if self.cond_stage_key in CAPTION_KEYS:
            raw: Any = [""] * batch_size
        else:
            raw = torch.full((batch_size,), self.null_class_index(), dtype=torch.long, device=self.device)
        return self.get_learned_conditioning(raw)

    def raw_condition(self, batch: Mapping[str, Any], key: str, x: torch.Tensor) -> Any:
        """The condition of `batch` before encoding: captions (list of str), labels (LongTensor) or an image (NCHW)."""
        if key == self.first_stage_key:
            return x
        if key not in batch:
            raise KeyError(f"batch has no '{key}' (keys: {sorted(batch)}): set cond_stage_key")
        value = batch[key]
        if key in CAPTION_KEYS:
            return list(value) if not torch.is_tensor(value) else value
        if key in ("class_label", "class") or (torch.is_tensor(value) and value.ndim == 1):
            return torch.as_tensor(value).long().to(self.device)
        return self.image_input(batch, key)

    def get_input(self, batch: Mapping[str, Any], k: str, return_first_stage_outputs: bool = False,
                  force_c_encode: bool = False, cond_key: str | None = None, return_original_cond: bool = False,
                  bs: int | None = None) -> list:
        """[z, c] from a batch: z = scaled latent of batch[k], c = the condition, encoded unless the encoder
        is trained (then it is encoded in `forward`, inside the autograd graph). With
        `return_first_stage_outputs` also x and its reconstruction, with `return_original_cond` the raw condition."""
        x = self.image_input(batch, k)
        if bs is not None:
            x = x[:bs]
            batch = {key: value[:bs] for key, value in batch.items()}
        if self.first_stage_cache is not None:
            posterior = self.first_stage_cache.encode(self.encode_first_stage, x)
        else:
            posterior = self.encode_first_stage(x)
        z = self.get_first_stage_encoding(posterior).detach()
        c, xc = self._condition_from_batch(batch, x, cond_key or self.cond_stage_key, force_c_encode)
        out = [z, c]
        if return_first_stage_outputs:
            out.extend([x, self.decode_first_stage(z)])
        if return_original_cond:
            out.append(xc)
        return out

    def _condition_from_batch(self, batch: Mapping[str, Any], x: torch.Tensor, key: str, force_c_encode: bool):
        if self.conditioning_key is None:
            return None, None
        if key == "masked_image":
            xc = self.image_input(batch, "masked_image")
            c = self.get_inpainting_condition(xc, self.image_input(batch, "mask"))
            return c, xc
        xc = self.raw_condition(batch, key, x)
        if self.training and self.conditioning_key != "concat":
            xc = self.drop_condition(xc)
        c = self.get_learned_conditioning(xc) if (not self.cond_stage_trainable or force_c_encode) else xc
        if self.conditioning_key == "hybrid":  # text/class by cross-attention + masked image by concatenation
            if self.cond_stage_trainable and not force_c_encode:
                raise ValueError("hybrid conditioning with a trainable condition encoder is not supported")
            concat = self.get_inpainting_condition(self.image_input(batch, "masked_image"), self.image_input(batch, "mask"))
            c = {"c_concat": [concat], "c_crossattn": [c]}
        return c, xc

    def apply_model(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: Any = None, return_ids: bool = False) -> torch.Tensor:
        """UNet output for x_t. cond: a tensor (context for crossattn, channels for concat, labels for adm),
        a list of tensors, or for hybrid a dict {"c_concat": [...], "c_crossattn": [...]}."""
        if self.conditioning_key is None:
            return self.model(x_noisy, t)
        if not isinstance(cond, dict):
            cond = {"c_concat" if self.conditioning_key == "concat" else "c_crossattn": cond if isinstance(cond, list) else [cond]}
        return self.model(x_noisy, t, **cond)

    def forward(self, x: torch.Tensor, c: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = self.sample_timesteps(x.shape[0])
        if self.conditioning_key is not None and self.cond_stage_trainable:
            c = self.get_learned_conditioning(c)
        return self.p_losses(x, c, t)

    def shared_step(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z, c = self.get_input(batch, self.first_stage_key)
        return self(z, c)

    def training_step(self, batch: Mapping[str, Any], optimizer_index: int = 0, global_step: int = 0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.scale_by_std and global_step == 0 and not self.restarted_from_ckpt and not getattr(self, "_std_set", False):
            value = self.set_scale_factor_from_latents(self.image_input(batch, self.first_stage_key))
            self._std_set = True
            print(f"scale_by_std: scale_factor set to {value:.5f} (1 / std of the first batch's latents)")
        return super().training_step(batch, optimizer_index, global_step)

    def trainable_parameters(self) -> list[nn.Parameter]:
        parameters = super().trainable_parameters()
        if self.cond_stage_trainable and self.cond_stage_model is not None:
            parameters.extend(self.cond_stage_model.parameters())
        return parameters

    # ---------------------------------------------------------------- sampling and image logs

    @torch.no_grad()
    def sample(self, batch_size: int = 16, cond: Any = None, num_steps: int | None = None,
               generator: torch.Generator | None = None, return_intermediates: bool = False,
               unconditional_conditioning: Any = None, guidance_scale: float = 1.0):
        """Latent samples (B, channels, image_size, image_size); decode them with `decode_first_stage`."""
        shape = (batch_size, self.channels, self.image_size, self.image_size)
        return self.p_sample_loop(cond, shape, num_steps, generator=generator, return_intermediates=return_intermediates,
                                  unconditional_conditioning=unconditional_conditioning, guidance_scale=guidance_scale)

    @torch.no_grad()
    def log_images(self, batch: Mapping[str, Any], max_images: int = 8, sample: bool = True, sample_steps: int = 50,
                   guidance_scale: float = 3.0) -> dict[str, torch.Tensor]:
        """inputs, reconstructions, diffusion_row (one row per input, t rising), samples for the batch's
        conditions, progressive_row (one row per sample: x_0 predictions along the chain), and, when the
        model was trained with condition dropout, guided samples `samples_cfg_<scale>`."""
        batch_size = min(max_images, len(batch[self.first_stage_key]))
        was_training = self.training
        self.eval()  # no condition dropout while logging
        try:
            z, c, x, reconstruction = self.get_input(batch, self.first_stage_key, return_first_stage_outputs=True,
                                                     force_c_encode=True, bs=batch_size)
            logs = {"inputs": x, "reconstructions": reconstruction}
            if self.cond_stage_key == "masked_image" or self.conditioning_key == "hybrid":
                logs["masked_image"] = self.image_input(batch, "masked_image")[:batch_size]
            logs["diffusion_row"] = self.decode_first_stage(self._diffusion_row(z))
            if sample:
                with self.ema_scope():
                    samples, intermediates = self.sample(batch_size, cond=c, num_steps=sample_steps, return_intermediates=True)
                    logs["samples"] = self.decode_first_stage(samples)
                    logs["progressive_row"] = self.decode_first_stage(square_rows(intermediates))
                    if self.cond_drop_prob > 0 and guidance_scale != 1.0:
                        guided = self.sample(batch_size, cond=c, num_steps=sample_steps, guidance_scale=guidance_scale,
                                             unconditional_conditioning=self._unconditional_like(c, batch_size))
                        logs[f"samples_cfg_{guidance_scale:g}"] = self.decode_first_stage(guided)
        finally:
            self.train(was_training)
        return {key: value.float().clamp(-1, 1) for key, value in logs.items()}

    def _unconditional_like(self, c: Any, batch_size: int) -> Any:
        uncond = self.get_unconditional_conditioning(batch_size)
        if isinstance(c, dict):
            return {"c_concat": c["c_concat"], "c_crossattn": [uncond]}
        return uncond


# ----------------------------------------------------------------------------- helpers

def square_rows(steps: Sequence[torch.Tensor]) -> torch.Tensor:
    """n images per step (n = batch size) -> n*n images, row i = image i at n evenly chosen steps, so that
    a square grid (the training loop's default) shows one row per image."""
    count = len(steps[0])
    chosen = np.linspace(0, len(steps) - 1, count).round().astype(int)
    return rearrange([steps[index] for index in chosen], "step b c h w -> (b step) c h w")


def _plain(config: Any) -> Any:
    """OmegaConf -> plain containers (other values unchanged)."""
    if hasattr(config, "items") and not isinstance(config, dict):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(config, resolve=True)
    return config


def resolve_weights_path(path: str | Path) -> Path:
    """A weights file given relative to the working directory or to the repository root; a clear error
    saying how to make it when it is missing."""
    path = Path(path)
    repository_root = Path(__file__).resolve().parents[2]
    for candidate in (path, repository_root / path):
        if candidate.is_file():
            return candidate
    if path.suffix == ".ckpt" and path.parent.parent.name == "first_stage_models":  # an original released model
        how = f"fetch it with `bash scripts/download_models.sh {path.parent.name}`"
    else:
        how = ("train the autoencoder first (`python main.py --base configs/autoencoder/lite_kl_f4_emoji32.yaml -t`, "
               "or notebooks/02) and export it there with scripts/export_model.py")
    raise FileNotFoundError(
        f"first-stage weights '{path}' not found (looked in the working directory and in {repository_root}): {how}; "
        "to train on your own images instead: `make own-autoencoder DATA=<folder>` and the folder_*.yaml configs "
        "(README, \"Train on your own images\")"
    )
