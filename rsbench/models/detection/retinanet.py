"""RetinaNet as MTP trains it on xView (MMDetection 3.1 config), on torchvision's :class:`RetinaNet`.

Matched: FPN on C3-C5 with P6 / P7 ``on_input`` and no ReLU before P7 (:mod:`.fpn`), float anchors
at fixed strides 8-128 (:mod:`.anchors`), ``MaxIoUAssigner(0.5, 0.4, min_pos_iou=0)`` with mmdet's
low-quality rule (:mod:`.matcher`), no resizing, 100 detections per image, and mmdet's
``min_bbox_size=0`` test filter (boxes of zero width or height after clipping are dropped). Already
equal in torchvision: ``RetinaHead`` (4 convs + ReLU, normal(0.01), prior-prob 0.01 bias), focal loss
(alpha 0.25, gamma 2) and L1 box loss per image over its positives, 1000 candidates per level.
Labels are 0-based, as torchvision's RetinaNet has no background class.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection.retinanet import RetinaNet as TVRetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import batched_nms, clip_boxes_to_image

from rsbench.models.detection.anchors import retinanet_anchor_generator
from rsbench.models.detection.faster_rcnn import merge_settings
from rsbench.models.detection.fpn import DetectionBackbone
from rsbench.models.detection.matcher import MaxIoUMatcher
from rsbench.models.detection.rpn import at_least_fp32
from rsbench.models.detection.transform import PadOnlyTransform

#: the xView recipe (MTP ``retinanet_*_416_*_xview.py``); every key can be overridden by name
RETINANET_XVIEW: dict[str, Any] = {
    "fpn_channels": 256, "start_level": 1, "octave_base_scale": 4.0, "scales_per_octave": 3, "anchor_ratios": (0.5, 1.0, 2.0),
    "anchor_strides": (8, 16, 32, 64, 128), "fg_iou_thresh": 0.5, "bg_iou_thresh": 0.4, "min_pos_iou": 0.0,
    "score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_img": 100, "topk_candidates": 1000, "size_divisible": 32,
}

LOSS_NAMES = {"classification": "loss_cls", "bbox_regression": "loss_bbox"}


class RetinaNet(TVRetinaNet):
    """torchvision's RetinaNet with mmdet's loss names and test-time box filter.

    ``forward(images, targets=None)``: training → ``{loss_cls, loss_bbox}``; eval → one
    ``{boxes, scores, labels}`` per image. ``backbone.body`` is the rsbench backbone.
    """

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        out = super().forward(images, targets)
        if self.training:
            return {LOSS_NAMES.get(k, k): v for k, v in out.items()}
        return out

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        """mmdet ``_predict_by_feat_single`` + ``_bbox_post_process``: per level, sigmoid scores > thr and the
        best ``topk_candidates`` (``nms_pre``), decoded and clipped; then boxes with w or h <= 0 dropped
        (``min_bbox_size=0``; torchvision keeps them), class-wise NMS, the best ``detections_per_img``."""
        out = []
        for i, shape in enumerate(image_shapes):
            boxes, scores, labels = [], [], []
            for deltas, logits, anc in zip(head_outputs["bbox_regression"], head_outputs["cls_logits"], anchors[i]):
                s = torch.sigmoid(logits[i]).flatten()
                idx = torch.where(s > self.score_thresh)[0]
                s, top = s[idx].topk(min(self.topk_candidates, idx.numel()))
                idx = idx[top]
                a = torch.div(idx, logits.shape[-1], rounding_mode="floor")
                boxes.append(clip_boxes_to_image(self.box_coder.decode_single(deltas[i][a], anc[a]), shape))
                scores.append(s)
                labels.append(idx % logits.shape[-1])
            out.append(_nms(torch.cat(boxes), torch.cat(scores), torch.cat(labels), self.nms_thresh,
                            self.detections_per_img))
        return out


class FP32RetinaNetHead(RetinaNetHead):
    """torchvision's :class:`RetinaNetHead` (= mmdet ``RetinaHead``) whose outputs are at least float32."""

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        return {k: at_least_fp32(v) for k, v in super().forward(x).items()}


def _nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou: float, max_det: int) -> dict[str, Tensor]:
    ok = torch.where((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))[0]
    keep = ok[batched_nms(boxes[ok], scores[ok], labels[ok], iou)[:max_det]]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def build_retinanet(backbone: nn.Module, num_classes: int, *, img_size: Any, **overrides: Any) -> RetinaNet:
    """RetinaNet + FPN (P3-P7) on rsbench pyramid ``backbone`` (4 maps at strides 4-32), xView settings."""
    c = merge_settings(RETINANET_XVIEW, overrides, "retinanet")
    neck = DetectionBackbone(backbone, c["fpn_channels"], start_level=c["start_level"], extra="on_input")
    anchors = retinanet_anchor_generator(c["octave_base_scale"], c["scales_per_octave"], c["anchor_ratios"],
                                         c["anchor_strides"])
    head = FP32RetinaNetHead(neck.out_channels, anchors.num_anchors_per_location()[0], num_classes)
    matcher = MaxIoUMatcher(c["fg_iou_thresh"], c["bg_iou_thresh"], min_pos_iou=c["min_pos_iou"])
    model = RetinaNet(neck, num_classes, anchor_generator=anchors, head=head, proposal_matcher=matcher,
                      score_thresh=c["score_thresh"], nms_thresh=c["nms_thresh"],
                      detections_per_img=c["detections_per_img"], topk_candidates=c["topk_candidates"])
    model.transform = PadOnlyTransform(c["size_divisible"])
    model.num_classes, model.img_size, model.settings = int(num_classes), img_size, c
    return model
