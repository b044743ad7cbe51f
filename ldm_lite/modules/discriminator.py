"""PatchGAN discriminator (Isola et al. 2017, "Image-to-Image Translation with Conditional
Adversarial Networks"): a small conv net whose output is a grid of real/fake logits, one per
overlapping image patch. The paper's first stage uses it for a patch-based adversarial objective
that keeps reconstructions sharp (Sec. 3, following Esser et al. 2021)."""
from __future__ import annotations

import torch
from torch import nn


def weights_init(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016): convs N(0, 0.02), norm scales N(1, 0.02)."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class NLayerDiscriminator(nn.Module):
    """`n_layers` stride-2 4x4 convs (channels ndf, 2 ndf, 4 ndf, ... up to 8 ndf) with BatchNorm and
    LeakyReLU(0.2), one stride-1 conv, then a 1-channel logit map (70x70 receptive field for n_layers=3)."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, use_actnorm: bool = False) -> None:
        super().__init__()
        if use_actnorm:
            raise ValueError("use_actnorm=True is not supported: set use_actnorm to false (BatchNorm is used)")
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        multiplier = 1
        for layer in range(1, n_layers + 1):
            previous, multiplier = multiplier, min(2 ** layer, 8)
            stride = 2 if layer < n_layers else 1
            layers += [nn.Conv2d(ndf * previous, ndf * multiplier, kernel_size=4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * multiplier),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * multiplier, 1, kernel_size=4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
