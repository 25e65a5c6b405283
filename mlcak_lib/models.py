"""Teacher and student Vision Transformers with matched token grids (introduced in notebook 03).

Every model of the course is one family: a timm :class:`~timm.models.vision_transformer.VisionTransformer`
with ``in_chans=1``, internal normalisation, a class token and two heads on it:

* **MLCT** head -- multi-label local findings, ``C`` logits (sigmoid + BCE);
* **MCCT** head -- global state normal/abnormal, 2 logits (softmax + cross-entropy).

``model(x)`` takes images in ``[0, 1]`` (bone bright, ``[B, 1, r, r]``) and returns a dict
``{"mlct": [B, C], "mcct": [B, 2], "tokens": [B, N, D]}`` where ``tokens`` are the final
(normed) patch tokens, ``N = grid**2``. When a local head is attached (:func:`attach_local_head`,
notebook 06) the dict also has ``"local": local_head(tokens)`` ``[B, N, C + 1]`` (one logit per class
and one for "any lesion" on every token; :func:`local_maps` reshapes it to ``[B, C + 1, g, g]``).

**Matched token grids.** The patch size scales with the input resolution so that the teacher
(224) and every student (112 / 56 / 28) see the same ``grid x grid`` tokens, hence attention maps
of identical shape ``[heads, N + 1, N + 1]`` that can be compared (MLCAK's attention loss):

=========  ===============================  ===============================
resolution default profile (grid 7)         full profile (grid 14)
=========  ===============================  ===============================
224        patch 32                         patch 16
112        patch 16                         patch 8
56         patch 8                          patch 4
28         patch 4                          patch 2
=========  ===============================  ===============================

**Profiles** (``ARCHITECTURES``, side by side):

===============  ===========================  ============================
setting          ``default`` (CPU, minutes)   ``full`` (GPU, ViT-Tiny size)
===============  ===========================  ============================
grid             7 x 7 (49 tokens + CLS)      14 x 14 (196 tokens + CLS)
embed_dim        96                           192
depth            4                            12
num_heads        3                            3
mlp_ratio        2                            4
stem             conv (hybrid ViT)            conv (hybrid ViT)
stem_channels    (16, 32, 64)                 (24, 48, 96)
===============  ===========================  ============================

**Why a convolutional stem (course choice, measured in notebook 04).** A from-scratch ViT
whose patch embedding is a single 32x32 linear projection has to learn, from a few thousand
images, to find a 4-pixel nodule inside a 1024-pixel patch; the course measured such a
teacher to be *weaker* than a 28-pixel model (see METHOD.md). Early convolutions (Xiao et al.,
"Early Convolutions Help Transformers See Better", NeurIPS 2021) give the patch embedding a
local, translation-equivariant detector for small structures at almost no cost. The stem is
``[patchify s0] -> n x (3x3 conv, stride 2, BN, ReLU) -> 1x1 conv to embed_dim`` with
``n = min(log2(patch), len(stem_channels))`` stride-2 stages and the remaining factor
``s0 = patch / 2**n`` taken by a non-overlapping ``s0 x s0`` patchify convolution. The student
uses the same rule at its own resolution (28/4: two stride-2 stages, no patchify), so teacher
and students remain one family; ``stem="patch"`` gives the plain linear ViT patch embedding.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from .config import get_profile
from .dicom import NETWORK_MEAN, NETWORK_STD  # the network statistics of the course (notebook 01)

#: Token grid, width, depth, heads and stem for each profile (see the module docstring).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "default": dict(
        grid=7, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0, stem="conv", stem_channels=(16, 32, 64),
        stem_convs=1, pool="cls", drop_path_rate=0.0,
    ),
    "full": dict(
        grid=14, embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0, stem="conv", stem_channels=(24, 48, 96),
        stem_convs=1, pool="cls", drop_path_rate=0.1,
    ),
}

#: Resolution of the teacher (the high-resolution image of the dataset contract).
TEACHER_RESOLUTION = 224


def patch_size_for(resolution: int, grid: int) -> int:
    """Patch size giving a ``grid x grid`` token map at ``resolution`` (e.g. 224, 7 -> 32; 28, 7 -> 4)."""
    if resolution % grid:
        raise ValueError(f"resolution {resolution} is not a multiple of the token grid {grid}")
    return resolution // grid


class ConvStem(nn.Module):
    """Hybrid-ViT patch embedding: strided 3x3 convolutions down to the token grid (see module docstring).

    Drop-in for timm's ``PatchEmbed`` (``embed_layer=partial(ConvStem, stem_channels=...)``):
    exposes ``img_size``, ``patch_size``, ``grid_size``, ``num_patches``, ``feat_ratio()`` and
    returns flattened tokens ``[B, N, embed_dim]``.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 32,
        in_chans: int = 1,
        embed_dim: int = 96,
        stem_channels: tuple[int, ...] = (16, 32, 64),
        stem_convs: int = 1,
        bias: bool = True,
        **_: Any,  # timm passes dynamic_img_pad, device, dtype, ... ; unused here
    ) -> None:
        super().__init__()
        if patch_size & (patch_size - 1):
            raise ValueError(f"ConvStem needs a power-of-two patch size, got {patch_size}")
        img_size = int(img_size[0] if isinstance(img_size, (tuple, list)) else img_size)
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = True
        n = min(int(math.log2(patch_size)), len(stem_channels))
        s0 = patch_size // 2**n
        chans = list(stem_channels[len(stem_channels) - n :]) if n else []
        layers: list[nn.Module] = []
        c_in = in_chans
        if s0 > 1:
            c_first = chans[0] // 2 if chans else embed_dim
            layers += [nn.Conv2d(c_in, c_first, kernel_size=s0, stride=s0, bias=False), nn.BatchNorm2d(c_first), nn.ReLU(inplace=True)]
            c_in = c_first
        if stem_convs < 1:
            raise ValueError(f"stem_convs must be at least 1, got {stem_convs}")
        for c in chans:
            layers += [nn.Conv2d(c_in, c, kernel_size=3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            for _ in range(stem_convs - 1):  # stride-1 refinements at the stage's scale
                layers += [nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, embed_dim, kernel_size=1, bias=bias)
        self.norm = nn.Identity()

    def feat_ratio(self, as_scalar: bool = True):
        return self.patch_size[0] if as_scalar else self.patch_size

    def dynamic_feat_size(self, img_size):
        return img_size[0] // self.patch_size[0], img_size[1] // self.patch_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.convs(x))
        return x.flatten(2).transpose(1, 2)


class MLCAKViT(nn.Module):
    """A timm ViT with internal normalisation and the MLCT / MCCT heads on the class token.

    Attributes: ``vit`` (the timm ``VisionTransformer``, ``num_classes=0``), ``mlct_head``,
    ``mcct_head``, ``local_head`` (``None`` until notebook 06 attaches a module mapping patch
    tokens ``[B, N, D]`` to ``[B, N, K]``), ``resolution``, ``grid``, ``patch_size``,
    ``arch`` (the configuration dict it was built from).
    """

    def __init__(self, vit: nn.Module, num_classes: int, resolution: int, arch: dict[str, Any]) -> None:
        super().__init__()
        self.vit = vit
        dim = vit.embed_dim
        self.mlct_head = nn.Linear(dim, num_classes)
        self.mcct_head = nn.Linear(dim, 2)
        self.local_head: nn.Module | None = None
        self.resolution = resolution
        self.grid = vit.patch_embed.grid_size[0]
        self.patch_size = vit.patch_embed.patch_size[0]
        self.num_classes = num_classes
        self.arch = dict(arch)
        # Inputs are in [0, 1]; the network sees (x - 0.5) / 0.25 (dicom.NETWORK_MEAN / NETWORK_STD).
        self.register_buffer("mean", torch.tensor(float(NETWORK_MEAN)), persistent=False)
        self.register_buffer("std", torch.tensor(float(NETWORK_STD)), persistent=False)
        for head in (self.mlct_head, self.mcct_head):
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)

    @property
    def blocks(self) -> nn.Sequential:
        """The transformer blocks (where attention lives)."""
        return self.vit.blocks

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All final tokens ``[B, 1 + N, D]`` (class token first) for images in ``[0, 1]``."""
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            raise ValueError(f"this model takes {self.resolution}x{self.resolution} images, got {tuple(x.shape[-2:])}")
        return self.vit.forward_features((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.forward_tokens(x)
        tokens = feats[:, self.vit.num_prefix_tokens :]
        pooled = feats[:, 0] if self.arch.get("pool", "cls") == "cls" else tokens.mean(dim=1)
        out = {"mlct": self.mlct_head(pooled), "mcct": self.mcct_head(pooled), "tokens": tokens}
        if self.local_head is not None:
            out["local"] = self.local_head(tokens)
        return out


def architecture(profile: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The architecture dict of a profile (``ARCHITECTURES``) with ``overrides`` applied."""
    arch = dict(ARCHITECTURES[get_profile(profile)])
    unknown = set(overrides) - set(arch)
    if unknown:
        raise TypeError(f"unknown architecture settings: {sorted(unknown)}")
    arch.update({k: v for k, v in overrides.items() if v is not None})
    return arch


def build_vit(
    resolution: int,
    num_classes: int,
    profile: str | None = None,
    seed: int | None = None,
    **overrides: Any,
) -> MLCAKViT:
    """Build a teacher (``resolution=224``) or student (112/56/28) of the profile's family.

    ``overrides`` change any ``ARCHITECTURES`` entry (``grid``, ``embed_dim``, ``depth``,
    ``num_heads``, ``mlp_ratio``, ``stem`` ("conv" or "patch"), ``stem_channels``,
    ``drop_path_rate``). ``seed`` makes the initial weights reproducible. Never pretrained.
    """
    from timm.models.vision_transformer import VisionTransformer

    arch = architecture(profile, **overrides)
    patch = patch_size_for(resolution, arch["grid"])
    if arch["stem"] == "conv":
        embed_layer = partial(ConvStem, stem_channels=tuple(arch["stem_channels"]), stem_convs=int(arch.get("stem_convs", 1)))
    elif arch["stem"] == "patch":
        from timm.layers import PatchEmbed as embed_layer
    else:
        raise ValueError(f"stem must be 'conv' or 'patch', got {arch['stem']!r}")
    if seed is not None:
        torch.manual_seed(seed)
    vit = VisionTransformer(
        img_size=resolution,
        patch_size=patch,
        in_chans=1,
        num_classes=0,
        global_pool="token",
        embed_dim=arch["embed_dim"],
        depth=arch["depth"],
        num_heads=arch["num_heads"],
        mlp_ratio=arch["mlp_ratio"],
        drop_path_rate=arch["drop_path_rate"],
        embed_layer=embed_layer,
    )
    return MLCAKViT(vit, num_classes, resolution, arch)


def build_teacher(num_classes: int, profile: str | None = None, seed: int | None = None, **overrides: Any) -> MLCAKViT:
    """The high-resolution teacher (224 px) of the profile."""
    return build_vit(TEACHER_RESOLUTION, num_classes, profile=profile, seed=seed, **overrides)


def build_student(resolution: int, num_classes: int, profile: str | None = None, seed: int | None = None, **overrides: Any) -> MLCAKViT:
    """A low-resolution student (112 / 56 / 28 px) with the teacher's token grid."""
    return build_vit(resolution, num_classes, profile=profile, seed=seed, **overrides)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------
# The local head of the multi-task students (notebook 06)
# --------------------------------------------------------------------------------------------

class LocalHead(nn.Module):
    """Per-token classifier ``[B, N, D] -> [B, N, K]`` shared by all tokens.

    ``hidden=None``: LayerNorm + Linear (a linear probe on each token); ``hidden=h``: LayerNorm +
    Linear(D, h) + GELU + Linear(h, K). The output bias starts at the logit of ``prior`` (default
    ``log(0.05 / 0.95)``: lesion tokens are rare) so the first steps do not waste effort
    learning the base rate.
    """

    def __init__(self, dim: int, n_out: int, hidden: int | None = None, prior: float = 0.05) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(dim)]
        if hidden:
            layers += [nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_out)]
        else:
            layers += [nn.Linear(dim, n_out)]
        self.net = nn.Sequential(*layers)
        self.n_out = n_out
        last = layers[-1]
        nn.init.trunc_normal_(last.weight, std=0.02)
        nn.init.constant_(last.bias, math.log(prior / (1 - prior)))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)


def attach_local_head(model: nn.Module, num_classes: int | None = None, hidden: int | None = None) -> nn.Module:
    """Put a :class:`LocalHead` with ``C + 1`` outputs into ``model.local_head`` (in place); return ``model``.

    ``model`` is a :class:`mlcak_lib.models.MLCAKViT` (its forward then returns ``out["local"]``
    ``[B, N, C+1]``). ``num_classes`` defaults to ``model.num_classes``.
    """
    if not hasattr(model, "local_head"):
        raise TypeError("attach_local_head needs a model with a `local_head` slot (mlcak_lib.models.MLCAKViT)")
    c = int(num_classes if num_classes is not None else model.num_classes)
    dim = int(getattr(getattr(model, "vit", model), "embed_dim"))
    model.local_head = LocalHead(dim, c + 1, hidden)
    return model


def local_maps(local: Tensor, grid: int | None = None) -> Tensor:
    """Reshape per-token outputs ``[B, N, K]`` to maps ``[B, K, g, g]`` (row-major tokens, as timm)."""
    b, n, k = local.shape
    g = grid or math.isqrt(n)
    if g * g != n:
        raise ValueError(f"{n} tokens do not form a {g} x {g} grid")
    return local.transpose(1, 2).reshape(b, k, g, g)
