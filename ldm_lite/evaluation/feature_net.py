"""The project's own feature network for FID, KID and precision/recall (Inception-v3's weights
cannot be had offline): a small CNN trained on the clip-art, emoji and shapes training splits to
predict the coarse category of an image (CATEGORIES + "shape", 11 classes), with two auxiliary
tasks that keep colour and layout in its features: the image's 4x4 colour thumbnail and, on shapes
images, the exact attributes (shape, colour, size, position).

`features(images)` are the penultimate activations (the 128-d embedding the heads read), as
Inception's pool3 features are for FID. Images of any size are resized to 64x64 first.

Loading (`load_feature_net`) reads a safetensors file and the config YAML only (no code runs from a
file) and prints the held-out accuracy stored with the weights."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from ldm_lite.checkpoint import load_state_dict_file

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
EVALUATION_MODELS = REPOSITORY_ROOT / "models" / "evaluation"
INPUT_SIZE = 64
# ldm_lite.data.clipart.CATEGORIES as the shipped net learnt them (its class head depends on this order)
CLIPART_CATEGORIES = ("animal", "food", "plant", "person", "face", "vehicle", "building", "object", "symbol", "flag")
FEATURE_CLASSES: tuple[str, ...] = CLIPART_CATEGORIES + ("shape",)
THUMBNAIL_SIZE = 4
SHAPE_ATTRIBUTE_CLASSES = {"shape": 5, "color": 6, "size": 2, "position": 9}  # ldm_lite.data.shapes


def resize_for_network(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """NCHW images in [-1, 1] -> size x size (bilinear, antialiased when shrinking); float32."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected NCHW RGB images, got shape {tuple(images.shape)}")
    images = images.float()
    if images.shape[-2:] == (size, size):
        return images
    shrinking = min(images.shape[-2:]) > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def convolution_block(inputs: int, outputs: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True)]


def convolution_trunk(widths: Sequence[int]) -> nn.Sequential:
    """A VGG-style trunk sized for two CPU cores: a stride-2 3x3 stem (64 -> 32 px), then one 3x3
    convolution block per width with 2x2 max pooling between them (32 -> 16 -> 8 -> 4 with four
    widths), and a second block at the last width."""
    layers: list[nn.Module] = convolution_block(3, widths[0], stride=2)
    channels = widths[0]
    for index, width in enumerate(widths):
        layers += convolution_block(channels, width)
        channels = width
        if index < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
    layers += convolution_block(channels, channels)
    return nn.Sequential(*layers)


class FeatureNet(nn.Module):
    """CNN trunk -> global average pooling -> 128-d embedding (the features) -> heads."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), feature_dim: int = 128,
                 num_classes: int = len(FEATURE_CLASSES)):
        super().__init__()
        self.trunk = convolution_trunk(widths)
        self.embedding = nn.Linear(widths[-1], feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.thumbnail_head = nn.Linear(feature_dim, 3 * THUMBNAIL_SIZE**2)
        self.shape_attribute_head = nn.Linear(feature_dim, sum(SHAPE_ATTRIBUTE_CLASSES.values()))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, feature_dim) embeddings of NCHW images in [-1, 1] (resized to 64x64); keeps gradients."""
        return self.embedding(self.trunk(resize_for_network(images)).mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.embed(images)
        hidden = F.relu(features)
        return {"features": features, "logits": self.classifier(hidden),
                "thumbnail": self.thumbnail_head(hidden), "shape_attributes": self.shape_attribute_head(hidden)}

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Penultimate activations (N, feature_dim) in eval mode, on the CPU, float32."""
        self.eval()
        device = next(self.parameters()).device
        return torch.cat([self.embed(images[start:start + batch_size].to(device)).float().cpu()
                          for start in range(0, len(images), batch_size)])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted class indices into FEATURE_CLASSES."""
        self.eval()
        device = next(self.parameters()).device
        return torch.cat([self(images[start:start + batch_size].to(device))["logits"].argmax(1).cpu()
                          for start in range(0, len(images), batch_size)])


def thumbnail_target(images: torch.Tensor) -> torch.Tensor:
    """The 4x4 colour thumbnail (area average of the 64x64 image), flattened: (N, 48)."""
    return F.adaptive_avg_pool2d(resize_for_network(images), THUMBNAIL_SIZE).flatten(1)


@dataclass
class LoadedEvaluationModel:
    """A loaded evaluation network with what its card reports."""
    model: nn.Module
    config: dict[str, Any]
    folder: Path
    held_out: dict[str, Any] = field(default_factory=dict)


def load_evaluation_model(folder: str | Path, expected_kind: str, model_class: type[nn.Module], name: str,
                          headline: str, headline_label: str, verbose: bool = True) -> LoadedEvaluationModel:
    """An evaluation network from `models/evaluation/<name>/` (config.yaml + model.safetensors only: no
    code runs from a file), float32 in eval mode; prints its held-out `headline` (a key of the config's
    `held_out`) as `headline_label`."""
    folder = Path(folder)
    config_path, weights_path = folder / "config.yaml", folder / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"'{folder}' is not an evaluation model folder (config.yaml + model.safetensors): "
                                "run scripts/train_evaluation_models.py")
    config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    if config.get("kind") != expected_kind:
        raise ValueError(f"'{folder}' holds a {config.get('kind')!r} model, not a {expected_kind!r} model")
    model = model_class(**config["architecture"])
    model.load_state_dict({key: value.float() for key, value in load_state_dict_file(weights_path).items()}, strict=True)
    held_out = config.get("held_out", {})
    if verbose:
        print(f"{name} {folder.name}: held-out {headline_label} "
              f"{held_out.get(headline, float('nan')):.1%} ({held_out.get('description', 'see its model card')})")
    return LoadedEvaluationModel(model.eval(), config, folder, held_out)


def load_feature_net(folder: str | Path = EVALUATION_MODELS / "feature-net", verbose: bool = True) -> LoadedEvaluationModel:
    """The shipped feature network (float32, eval mode); prints its held-out accuracy."""
    return load_evaluation_model(folder, "feature_net", FeatureNet, "feature net", "accuracy", "accuracy", verbose)
