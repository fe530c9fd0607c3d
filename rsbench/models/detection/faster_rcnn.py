"""Faster R-CNN with FPN as MTP trains it on DIOR (MMDetection 3.1 config), on torchvision's parts.

What differs from torchvision's defaults and how it is matched: docs in the modules used here and
``/work/shared/reference/detection.md`` §2. Inputs are normalised images at their own size; labels
are 0-based outside (torchvision's class 0 is the background, so targets are shifted by +1 inside).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from rsbench.errors import ConfigError
from rsbench.models.detection.anchors import rpn_anchor_generator
from rsbench.models.detection.fpn import DetectionBackbone
from rsbench.models.detection.roi_heads import AlignedMultiScaleRoIAlign, MMDetRoIHeads, shared2fc_box_head
from rsbench.models.detection.rpn import FP32RPNHead, MMDetRPN
from rsbench.models.detection.transform import PadOnlyTransform

#: the DIOR recipe (MTP ``faster_rcnn_*_800_*_dior.py``); every key can be overridden by name
FASTER_RCNN_DIOR: dict[str, Any] = {
    "fpn_channels": 256, "anchor_scale": 8.0, "anchor_ratios": (0.5, 1.0, 2.0), "anchor_strides": (4, 8, 16, 32, 64),
    "rpn_fg_iou_thresh": 0.7, "rpn_bg_iou_thresh": 0.3, "rpn_min_pos_iou": 0.3,
    "rpn_batch_size_per_image": 256, "rpn_positive_fraction": 0.5,
    "rpn_pre_nms_top_n_train": 2000, "rpn_post_nms_top_n_train": 1000,
    "rpn_pre_nms_top_n_test": 1000, "rpn_post_nms_top_n_test": 1000, "rpn_nms_thresh": 0.7,
    "roi_output_size": 7, "roi_sampling_ratio": 0, "roi_aligned": True, "representation_size": 1024,
    "box_fg_iou_thresh": 0.5, "box_bg_iou_thresh": 0.5, "box_batch_size_per_image": 512, "box_positive_fraction": 0.25,
    "bbox_reg_weights": (10.0, 10.0, 5.0, 5.0), "box_score_thresh": 0.05, "box_nms_thresh": 0.5,
    "box_detections_per_img": 100, "size_divisible": 32,
}

LOSS_NAMES = {"loss_objectness": "loss_rpn_cls", "loss_rpn_box_reg": "loss_rpn_bbox"}


def merge_settings(defaults: dict[str, Any], overrides: dict[str, Any], what: str) -> dict[str, Any]:
    """``defaults`` updated by ``overrides``; an unknown key is a :class:`ConfigError` naming the known ones."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"{what}: unknown setting(s) {unknown}; known: {', '.join(sorted(defaults))}")
    return {**defaults, **overrides}


class FasterRCNN(GeneralizedRCNN):
    """torchvision's two-stage detector with 0-based labels and mmdet's loss names.

    ``forward(images, targets=None)``: training → ``{loss_rpn_cls, loss_rpn_bbox, loss_cls, loss_bbox}``;
    eval → one ``{boxes, scores, labels}`` per image, labels in ``[0, num_classes)``.
    ``backbone.body`` is the rsbench backbone, ``backbone.fpn`` the neck.
    """

    def __init__(self, backbone: DetectionBackbone, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module,
                 *, num_classes: int, img_size: Any = None, settings: dict[str, Any] | None = None) -> None:
        super().__init__(backbone, rpn, roi_heads, transform)
        self.num_classes = int(num_classes)
        self.img_size = img_size
        self.settings = dict(settings or {})

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if targets is not None:
            targets = [{**t, "labels": t["labels"] + 1} if "labels" in t else t for t in targets]
        out = super().forward(images, targets)
        if self.training:
            return {LOSS_NAMES.get(k, k): v for k, v in out.items()}
        return out


def build_faster_rcnn(backbone: nn.Module, num_classes: int, *, img_size: Any, **overrides: Any) -> FasterRCNN:
    """Faster R-CNN + FPN on rsbench pyramid ``backbone`` (4 maps at strides 4-32), DIOR settings."""
    c = merge_settings(FASTER_RCNN_DIOR, overrides, "faster_rcnn")
    neck = DetectionBackbone(backbone, c["fpn_channels"], start_level=0, extra="maxpool")
    anchors = rpn_anchor_generator(c["anchor_scale"], c["anchor_ratios"], c["anchor_strides"])
    rpn = MMDetRPN(
        anchors, FP32RPNHead(neck.out_channels, anchors.num_anchors_per_location()[0]),
        c["rpn_fg_iou_thresh"], c["rpn_bg_iou_thresh"], c["rpn_batch_size_per_image"], c["rpn_positive_fraction"],
        {"training": c["rpn_pre_nms_top_n_train"], "testing": c["rpn_pre_nms_top_n_test"]},
        {"training": c["rpn_post_nms_top_n_train"], "testing": c["rpn_post_nms_top_n_test"]},
        c["rpn_nms_thresh"], min_pos_iou=c["rpn_min_pos_iou"],
    )
    pooled = neck.names[:4]
    pool = AlignedMultiScaleRoIAlign(pooled, neck.strides[:4], c["roi_output_size"], c["roi_sampling_ratio"],
                                     aligned=c["roi_aligned"])
    head, predictor = shared2fc_box_head(neck.out_channels, c["roi_output_size"], c["representation_size"],
                                         num_classes + 1)
    roi_heads = MMDetRoIHeads(
        pool, head, predictor, c["box_fg_iou_thresh"], c["box_bg_iou_thresh"], c["box_batch_size_per_image"],
        c["box_positive_fraction"], c["bbox_reg_weights"], c["box_score_thresh"], c["box_nms_thresh"],
        c["box_detections_per_img"],
    )
    return FasterRCNN(neck, rpn, roi_heads, PadOnlyTransform(c["size_divisible"]), num_classes=num_classes,
                      img_size=img_size, settings=c)
