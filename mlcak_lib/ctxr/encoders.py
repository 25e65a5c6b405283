"""The two encoders of notebook 08 (issue 17): a small 3-D CNN for CT volumes and a bag-of-n-grams report encoder.

Both are CPU-sized (the paper uses a 3-D ViT-style CT encoder and a pre-trained clinical language model;
neither fits the course's budget nor its offline rule). Documented choices:

* :class:`CTEncoder`: four stride-2 ``Conv3d`` blocks (GroupNorm, GELU) from ``[B, 1, 64, 64, 64]`` to a
  4x4x4 grid, global average pooling, a linear embedding. Volumes come in as float32 in [0, 1] (a CT
  windowed like the course's films are displayed); the encoder centres them itself (``(x - 0.5) / 0.25``),
  so a dataset never needs to know the network's statistics (CONTRIBUTING). ``expert_dim`` adds the
  projection to the X-ray expert's embedding space that pair-wise KD compares (:func:`.losses.pairwise_kd`).
* :class:`TextEncoder`: an ``EmbeddingBag`` (mean) over word unigrams and bigrams (bigrams keep negation:
  "no pneumothorax" is not "pneumothorax"), then a two-layer MLP. The vocabulary comes from the training
  reports (:func:`build_vocabulary`), trained here from scratch; unknown n-grams are dropped.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import Tensor, nn

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


def ngrams(text: str) -> list[str]:
    """Lower-cased word unigrams and bigrams of ``text`` (a decimal such as ``1.2`` is one word)."""
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def build_vocabulary(texts: Sequence[str], min_count: int = 1) -> dict[str, int]:
    """N-gram -> index over ``texts`` (n-grams seen at least ``min_count`` times), sorted, so deterministic."""
    counts: dict[str, int] = {}
    for text in texts:
        for gram in ngrams(text):
            counts[gram] = counts.get(gram, 0) + 1
    return {g: i for i, g in enumerate(sorted(g for g, c in counts.items() if c >= min_count))}


def encode_texts(texts: Sequence[str], vocabulary: dict[str, int]) -> tuple[Tensor, Tensor]:
    """``(ids, offsets)`` for :class:`torch.nn.EmbeddingBag` (known n-grams only; an empty bag embeds to 0)."""
    ids: list[int] = []
    offsets: list[int] = []
    for text in texts:
        offsets.append(len(ids))
        ids.extend(vocabulary[g] for g in ngrams(text) if g in vocabulary)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class TextEncoder(nn.Module):
    """Report -> embedding: mean n-gram embedding, then ``Linear-GELU-Linear`` to ``embed_dim``."""

    def __init__(self, vocabulary: dict[str, int], embed_dim: int = 128, hidden: int = 128, seed: int = 0) -> None:
        super().__init__()
        self.vocabulary = dict(vocabulary)
        with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's random state untouched
            torch.manual_seed(seed)
            self.bag = nn.EmbeddingBag(max(len(vocabulary), 1), hidden, mode="mean")
            self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))
        self.embed_dim = embed_dim

    def forward(self, texts: Sequence[str]) -> Tensor:
        ids, offsets = encode_texts(texts, self.vocabulary)
        device = self.bag.weight.device
        return self.mlp(self.bag(ids.to(device), offsets.to(device)))


class CTEncoder(nn.Module):
    """CT volume ``[B, 1, D, H, W]`` (float in [0, 1], 64 cubed in the course) -> embedding ``[B, embed_dim]``."""

    def __init__(self, embed_dim: int = 128, channels: Sequence[int] = (8, 16, 32, 64),
                 expert_dim: int | None = None, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's random state untouched
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            c_in = 1
            for c in channels:
                layers += [nn.Conv3d(c_in, c, kernel_size=3, stride=2, padding=1), nn.GroupNorm(min(4, c), c), nn.GELU()]
                c_in = c
            self.features = nn.Sequential(*layers)
            self.embed = nn.Linear(c_in, embed_dim)
            self.to_expert = nn.Linear(embed_dim, expert_dim) if expert_dim else None
        self.embed_dim, self.expert_dim = embed_dim, expert_dim

    def forward(self, volume: Tensor) -> Tensor:
        if volume.ndim != 5 or volume.shape[1] != 1:
            raise ValueError(f"expected a volume [B, 1, D, H, W], got {tuple(volume.shape)}")
        x = self.features((volume - 0.5) / 0.25)
        return self.embed(x.mean(dim=(2, 3, 4)))

    def expert_projection(self, embedding: Tensor) -> Tensor:
        """The embedding in the X-ray expert's space (pair-wise KD); needs ``expert_dim``."""
        if self.to_expert is None:
            raise ValueError("built without expert_dim: no projection to the expert's space")
        return self.to_expert(embedding)
