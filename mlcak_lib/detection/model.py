"""A CPU-sized RetinaNet with OXnet's global classification head (notebook 07).

The detector is torchvision's :class:`~torchvision.models.detection.RetinaNet` (anchors, focal loss, box
coding, matching, NMS) on a small convolutional backbone with a three-level FPN (strides 8, 16, 32; 4, 8, 16 with
``same_maps`` at 112 px), made for one-channel course images in [0, 1] at 224 or 112 px. Nothing is downloaded;
the backbone's stages can start from an image classifier pretrained on other films (:mod:`.pretrain`).

:class:`OXnetDetector` runs the pieces of RetinaNet itself, so one forward pass gives everything OXnet's
losses need (:class:`DetectorOutput`): the head's logits and box regressions, the anchors, the per-level
shapes (for the detection subnet's per-class maps, :meth:`OXnetDetector.level_maps`), the last backbone
stage and the global head's class activation maps (a 1x1 convolution on that stage, as in the official
code's ``global_classifier``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FeaturePyramidNetwork

from ..dicom import NETWORK_MEAN, NETWORK_STD

#: Anchor sizes (px) of the three FPN levels at 224 px; each is multiplied by 2^0, 2^(1/3), 2^(2/3) and
#: scaled with the image size. The course's lesions span 4 px (calcifications) to about 100 px (cardiomegaly) at
#: 224; (8, 16, 32) left cardiomegaly and pneumothorax without a foreground anchor (see ``recipe`` for coverage).
BASE_ANCHOR_SIZES: tuple[int, ...] = (8, 16, 32)
ASPECT_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)
#: Box-coding weights of the official code (targets divided by 0.1, 0.1, 0.2, 0.2), with smooth-L1.
BOX_WEIGHTS: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)


def stem_stride(image_size: int, same_maps: bool) -> int:
    """The first stage's stride: 2, or with ``same_maps`` one that follows the image size (2 at 224 px, 1 at 112 px)."""
    return max(1, round(2 * image_size / 224)) if same_maps else 2


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Two 3x3 convolutions with GroupNorm and ReLU (the first strided)."""
    groups = min(8, c_out)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.GroupNorm(groups, c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.GroupNorm(groups, c_out), nn.ReLU(inplace=True),
    )


class TinyFPNBackbone(nn.Module):
    """Five strided stages (strides 2 ... 32) and an FPN on the last three (C3, C4, C5 -> P3, P4, P5).

    ``stem_stride=1`` keeps the first stage at full resolution (strides 1 ... 16): at 112 px this gives the same
    feature-map sizes, and so the same anchors relative to the image, as at 224 px.

    GroupNorm instead of the official ResNet's frozen BatchNorm: nothing here is pretrained, and batches
    mix two streams of different sizes, so statistics must not depend on the batch.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 24, 32, 64, 96), fpn_channels: int = 64,
                 stem_stride: int = 2) -> None:
        super().__init__()
        stages, c_in = [], 1
        for i, w in enumerate(widths):
            stages.append(_block(c_in, w, stem_stride if i == 0 else 2))
            c_in = w
        self.stages = nn.ModuleList(stages)
        self.fpn = FeaturePyramidNetwork(list(widths[-3:]), fpn_channels)
        self.out_channels = fpn_channels  # RetinaNet asks for it
        self.last_channels = widths[-1]

    def body(self, x: torch.Tensor) -> list[torch.Tensor]:
        """C3, C4, C5 of a normalised batch."""
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[-3:]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        c3, c4, c5 = self.body(x)
        return self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)]))


@dataclass
class DetectorOutput:
    """One forward pass of :class:`OXnetDetector` on ``B`` images.

    ``cls_logits`` ``[B, N, C]`` and ``bbox_regression`` ``[B, N, 4]`` over the ``N`` anchors of all levels
    (torchvision's order: level, then y, x, anchor); ``anchors``: ``B`` tensors ``[N, 4]`` (x0, y0, x1, y1 px);
    ``level_shapes``: ``(H, W)`` of each FPN level; ``num_anchors``: anchors per location; ``features``:
    ReLU of the last backbone stage ``[B, D, h, w]``; ``cam``: the global head's class activation maps
    ``[B, C, h, w]``; ``image_size``: the input's ``(H, W)``.
    """

    cls_logits: torch.Tensor
    bbox_regression: torch.Tensor
    anchors: list[torch.Tensor]
    level_shapes: list[tuple[int, int]]
    num_anchors: int
    features: torch.Tensor
    cam: torch.Tensor
    image_size: tuple[int, int]

    @property
    def head_outputs(self) -> dict[str, torch.Tensor]:
        return {"cls_logits": self.cls_logits, "bbox_regression": self.bbox_regression}

    def per_level(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """``tensor`` ``[B, N, ...]`` split into the FPN levels."""
        return list(tensor.split([h * w * self.num_anchors for h, w in self.level_shapes], dim=1))


class OXnetDetector(nn.Module):
    """RetinaNet (torchvision) + OXnet's global head, for ``num_classes`` lesion classes (notebook 07).

    ``anchor_sizes``: the three levels' base sizes at 224 px (scaled with ``image_size``); ``same_maps``: the first
    stage's stride follows the image size (2 at 224, 1 at 112), so both resolutions get the same feature maps.
    ``forward(images)`` takes ``[B, 1, H, W]`` images in [0, 1] and returns a :class:`DetectorOutput`;
    :meth:`detection_loss` (focal loss + smooth-L1, torchvision's matching: IoU >= 0.5 foreground,
    < 0.4 background), :meth:`detect` (boxes, scores, labels after NMS) and :meth:`level_maps` read it.
    """

    def __init__(self, num_classes: int, image_size: int = 224, widths: tuple[int, ...] = (16, 24, 32, 64, 96),
                 fpn_channels: int = 64, head_convs: int = 2, score_thresh: float = 0.05,
                 detections_per_img: int = 100, anchor_sizes: tuple[int, ...] = BASE_ANCHOR_SIZES,
                 same_maps: bool = False) -> None:
        super().__init__()
        scale = image_size / 224
        sizes = tuple(tuple(max(2.0, s * scale * 2 ** (k / 3)) for k in range(3)) for s in anchor_sizes)
        anchors = AnchorGenerator(sizes, (ASPECT_RATIOS,) * len(sizes))
        backbone = TinyFPNBackbone(widths, fpn_channels, stem_stride(image_size, same_maps))
        self.net = RetinaNet(backbone, num_classes, anchor_generator=anchors, score_thresh=score_thresh,
                             detections_per_img=detections_per_img, min_size=image_size, max_size=image_size,
                             image_mean=[NETWORK_MEAN], image_std=[NETWORK_STD])
        head = self.net.head
        for sub in (head.classification_head, head.regression_head):
            sub.conv = sub.conv[:head_convs]  # torchvision has four 3x3 convolutions per subnet: too slow on a CPU
        head.regression_head._loss_type = "smooth_l1"
        coder = det_utils.BoxCoder(weights=BOX_WEIGHTS)
        self.net.box_coder = coder
        head.regression_head.box_coder = coder
        self.global_head = nn.Conv2d(backbone.last_channels, num_classes, kernel_size=1, bias=False)
        nn.init.zeros_(self.global_head.weight)  # the official code's start: "avoid gradient explode"
        self.num_classes = num_classes
        self.image_size = image_size

    def load_backbone(self, stages: nn.ModuleList) -> "OXnetDetector":
        """Copy pretrained backbone ``stages`` (:class:`~.pretrain.BackboneClassifier`'s) into this detector."""
        self.net.backbone.stages.load_state_dict(stages.state_dict())
        return self

    @property
    def detection_parameters(self) -> list[nn.Parameter]:
        """The detection subnet's classification parameters (where dual attention alignment must reach)."""
        return list(self.net.head.classification_head.parameters())

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        x = (images - NETWORK_MEAN) / NETWORK_STD
        backbone: TinyFPNBackbone = self.net.backbone
        c3, c4, c5 = backbone.body(x)
        feats = list(backbone.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)])).values())
        head = self.net.head(feats)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        image_list = ImageList(x, [size] * len(images))
        anchors = self.net.anchor_generator(image_list, feats)
        features = F.relu(c5)
        return DetectorOutput(head["cls_logits"], head["bbox_regression"], anchors,
                              [(int(f.shape[-2]), int(f.shape[-1])) for f in feats],
                              self.net.anchor_generator.num_anchors_per_location()[0], features,
                              self.global_head(features), size)

    def detection_loss(self, out: DetectorOutput, targets: list[dict[str, torch.Tensor]],
                       index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """RetinaNet's losses (``classification``: focal, ``bbox_regression``: smooth-L1) on the images at
        ``index`` (default all), with ``targets`` (``boxes`` ``[K, 4]`` px, ``labels`` ``[K]``) for those images.
        An image without boxes is all background (a normal film with its boxes known)."""
        idx = torch.arange(len(out.anchors)) if index is None else index
        if len(idx) == 0:
            zero = out.cls_logits.sum() * 0.0
            return {"classification": zero, "bbox_regression": zero}
        head = {k: v[idx] for k, v in out.head_outputs.items()}
        return self.net.compute_loss(targets, head, [out.anchors[i] for i in idx.tolist()])

    @torch.no_grad()
    def detect(self, out: DetectorOutput) -> list[dict[str, torch.Tensor]]:
        """Boxes (px), scores and labels per image after torchvision's score threshold, top-k and NMS."""
        heads = {k: out.per_level(v) for k, v in out.head_outputs.items()}
        anchors = [out.per_level(a.unsqueeze(0)) for a in out.anchors]
        anchors = [[a[0] for a in per_image] for per_image in anchors]
        return self.net.postprocess_detections(heads, anchors, [out.image_size] * len(out.anchors))

    def level_maps(self, out: DetectorOutput) -> list[torch.Tensor]:
        """The detection subnet's per-class probability maps, max over anchors: one ``[B, C, H, W]`` per level."""
        maps = []
        for logits, (h, w) in zip(out.per_level(out.cls_logits), out.level_shapes):
            prob = torch.sigmoid(logits).view(len(logits), h, w, out.num_anchors, self.num_classes)
            maps.append(prob.amax(dim=3).permute(0, 3, 1, 2))
        return maps


def build_detector(num_classes: int, image_size: int = 224, seed: int = 0, **kwargs) -> OXnetDetector:
    """A freshly initialised :class:`OXnetDetector` (seeded; never pretrained)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OXnetDetector(num_classes, image_size, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
