"""ClassTokenEmbedder: a class label -> one learned token (B, 1, D) that the UNet attends to by
cross-attention; ldm-lite's `ClassEmbedder` as a diffusers model. An exported class-conditional model
carries this file in its `class_embedder/` folder (diffusers loads it with `trust_remote_code=True`):

    embedder = ClassTokenEmbedder.from_pretrained(folder, subfolder="class_embedder")
    context = embedder(torch.tensor([3, 7]))      # (2, 1, D): encoder_hidden_states of the UNet

Row `null_class_index` (when not None) is the "no class" token of classifier-free guidance."""
from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class ClassTokenEmbedder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, num_embeddings: int, embedding_dim: int, null_class_index: int | None = None):
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)

    def forward(self, class_labels: torch.Tensor) -> torch.Tensor:
        return self.embedding(torch.as_tensor(class_labels, device=self.embedding.weight.device).long())[:, None]
