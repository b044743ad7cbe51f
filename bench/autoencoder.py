"""Train-step speed of ldm_lite's AutoencoderKL against diffusers' AutoencoderKL of the same size.

One train step = forward (encode, posterior sample, decode) + L1 + KL loss + backward + Adam step,
on random images; the models run interleaved in this process, and the median of the repeats is
compared. ldm_lite steps with the fused Adam its `configure_optimizers` builds; the peer runs twice, with
torch's default Adam (as diffusers' training scripts build it) and with the same fused Adam. Prints the
ratios ldm_lite / diffusers (below 1 = ldm_lite is faster).

    python bench/autoencoder.py                      # the lite KL f=4 emoji config's network
    python bench/autoencoder.py --config configs/autoencoder/lite_kl_f8_emoji32.yaml --batch 32
    python bench/autoencoder.py --channels-last --bf16 --threads 2
    python bench/autoencoder.py --device cuda --batch 256   # on a GPU (TF32 off)
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
from omegaconf import OmegaConf

from ldm_lite.util import count_params, instantiate_from_config


def diffusers_peer(ddconfig: dict, embed_dim: int, mid_attention: bool) -> torch.nn.Module:
    """diffusers' AutoencoderKL with the same levels, channels, blocks per level and latent channels;
    `mid_attention`: its middle-block attention (diffusers' default) whatever the ldm_lite model has."""
    from diffusers import AutoencoderKL as DiffusersAutoencoderKL

    levels = len(ddconfig["ch_mult"])
    if ddconfig.get("attn_resolutions"):
        raise ValueError("the peer has no attention inside levels: bench a config with attn_resolutions: []")
    return DiffusersAutoencoderKL(
        in_channels=ddconfig["in_channels"], out_channels=ddconfig["out_ch"],
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(ddconfig["ch"] * m for m in ddconfig["ch_mult"]),
        layers_per_block=ddconfig["num_res_blocks"], latent_channels=embed_dim,
        norm_num_groups=min(32, ddconfig["ch"]), sample_size=ddconfig["resolution"],
        mid_block_add_attention=mid_attention,
    )


def ours_step(model, optimizer, images_nhwc: torch.Tensor) -> None:
    loss, _ = model.training_step({"image": images_nhwc}, 0, 0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def peer_step(model, optimizer, images_nchw: torch.Tensor, kl_weight: float) -> None:
    posterior = model.encode(images_nchw).latent_dist
    reconstruction = model.decode(posterior.sample()).sample
    loss = (images_nchw - reconstruction).abs().sum() / images_nchw.shape[0] + kl_weight * posterior.kl().sum() / images_nchw.shape[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/autoencoder/lite_kl_f4_emoji32.yaml")
    parser.add_argument("--batch", type=int, default=None, help="default: the config's batch size")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels-last", action="store_true", help="both models in channels_last memory format")
    parser.add_argument("--bf16", action="store_true", help="both models under bf16 autocast")
    parser.add_argument("--compile", action="store_true",
                        help="ldm_lite's encoder and decoder through torch.compile (the peer stays eager)")
    parser.add_argument("--peer-attention", action="store_true",
                        help="give the peer diffusers' default middle attention (the lite configs drop it); "
                             "default: the peer has exactly the ldm_lite architecture")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    warnings.filterwarnings("ignore", message="perceptual loss is off")
    config = OmegaConf.load(args.config)
    params = OmegaConf.to_container(config.model.params, resolve=True)
    if "n_embed" in params:
        raise ValueError(f"{args.config} is a VQ config: the peer is diffusers' AutoencoderKL, bench a KL config")
    params["lossconfig"]["params"]["disc_start"] = 10**9  # time the autoencoder, not the GAN
    batch = args.batch or int(config.data.params.batch_size)
    resolution = params["ddconfig"]["resolution"]

    torch.manual_seed(0)
    ours = instantiate_from_config({"target": config.model.target, "params": params})
    same_architecture = params["ddconfig"].get("attn_type", "vanilla") != "none"
    peer = diffusers_peer(params["ddconfig"], params["embed_dim"], args.peer_attention or same_architecture)
    ours, peer = ours.to(device), peer.to(device)
    if args.channels_last:
        ours, peer = ours.to(memory_format=torch.channels_last), peer.to(memory_format=torch.channels_last)
    if args.compile:
        ours.encoder.compile()
        ours.decoder.compile()
    ours.learning_rate = 1e-4
    ours_optimizer = ours.configure_optimizers()[0]
    peer_optimizer = torch.optim.Adam(peer.parameters(), lr=1e-4, betas=(0.5, 0.9))
    peer_fused = copy.deepcopy(peer)
    peer_fused_optimizer = torch.optim.Adam(peer_fused.parameters(), lr=1e-4, betas=(0.5, 0.9), fused=True)
    kl_weight = params["lossconfig"]["params"].get("kl_weight", 1e-6)
    images = torch.rand(batch, resolution, resolution, 3, device=device) * 2 - 1
    images_nchw = images.permute(0, 3, 1, 2).contiguous()
    if args.channels_last:
        images_nchw = images_nchw.to(memory_format=torch.channels_last)

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    runs = {"ldm_lite": lambda: ours_step(ours, ours_optimizer, images),
            "diffusers": lambda: peer_step(peer, peer_optimizer, images_nchw, kl_weight),
            "diffusers fused Adam": lambda: peer_step(peer_fused, peer_fused_optimizer, images_nchw, kl_weight)}
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.warmup + args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            with autocast:
                run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if repeat >= args.warmup:
                timings[name].append(time.perf_counter() - start)

    ours_params = count_params(torch.nn.ModuleList([ours.encoder, ours.decoder, ours.quant_conv, ours.post_quant_conv]))
    print(f"config {args.config}, batch {batch}, {resolution} px, device {device}, threads {torch.get_num_threads()}, "
          f"channels_last {args.channels_last}, bf16 {args.bf16}, compile {args.compile}, peer middle attention "
          f"{args.peer_attention or same_architecture}")
    print(f"parameters: ldm_lite {ours_params / 1e6:.2f}M, diffusers {count_params(peer) / 1e6:.2f}M")
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, median in medians.items():
        print(f"{name:20s} train step: median {median:.3f} s (min {min(timings[name]):.3f} s, {args.repeats} repeats)")
    for peer_name in ("diffusers", "diffusers fused Adam"):
        print(f"ratio ldm_lite / {peer_name}: {medians['ldm_lite'] / medians[peer_name]:.2f} (target <= 0.8)")


if __name__ == "__main__":
    main()
