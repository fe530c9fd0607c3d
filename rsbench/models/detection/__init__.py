"""Horizontal-box detectors on rsbench backbones, matching MTP's MMDetection 3.1 recipes on torchvision parts.

``build_detector(name, backbone, num_classes, img_size, **overrides)`` with ``name`` one of
:data:`DETECTORS` (``faster_rcnn``: DIOR; ``retinanet``: xView). ``backbone`` is an rsbench
``features="pyramid"`` backbone; the detector holds it at ``detector.backbone.body`` (parameter
names ``backbone.body.<the backbone's own names>``), its FPN at ``detector.backbone.fpn``, the
heads at ``rpn`` / ``roi_heads`` (Faster R-CNN) or ``head`` (RetinaNet). ``forward(images, targets)``
takes normalised (C, H, W) images at their own size and targets ``{boxes: (N, 4) xyxy pixels,
labels: int64 0-based}``; training returns a loss dict, eval a list of ``{boxes, scores, labels}``
with 0-based labels. Settings and what each matches: ``faster_rcnn.FASTER_RCNN_DIOR``,
``retinanet.RETINANET_XVIEW`` and the module docstrings.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from rsbench.models.detection.faster_rcnn import FASTER_RCNN_DIOR, FasterRCNN, build_faster_rcnn
from rsbench.models.detection.retinanet import RETINANET_XVIEW, RetinaNet, build_retinanet
from rsbench.registry import Registry

DETECTORS: Registry = Registry("detector")
DETECTORS.register("faster_rcnn")(build_faster_rcnn)
DETECTORS.register("retinanet")(build_retinanet)

#: attribute path from a detector to the rsbench backbone, and the matching parameter-name prefix
BACKBONE_PATH = "backbone.body"
BACKBONE_PREFIX = BACKBONE_PATH + "."


def build_detector(name: str, backbone: nn.Module, num_classes: int, img_size: Any, **kw: Any) -> nn.Module:
    """Detector ``name`` (``faster_rcnn`` or ``retinanet``) on ``backbone``; ``kw`` overrides its recipe."""
    return DETECTORS.get(name)(backbone, num_classes, img_size=img_size, **kw)


__all__ = [
    "BACKBONE_PATH",
    "BACKBONE_PREFIX",
    "DETECTORS",
    "FASTER_RCNN_DIOR",
    "RETINANET_XVIEW",
    "FasterRCNN",
    "RetinaNet",
    "build_detector",
    "build_faster_rcnn",
    "build_retinanet",
]
