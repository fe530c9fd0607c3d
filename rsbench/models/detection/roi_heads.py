"""The DIOR RoI head: RoIAlign, ``Shared2FCBBoxHead`` and its loss and test-time post-processing as MMDetection's.

* :class:`AlignedMultiScaleRoIAlign`: mmdet ``SingleRoIExtractor(RoIAlign(7, sampling_ratio=0,
  aligned=True), featmap_strides=[4, 8, 16, 32], finest_scale=56)``; torchvision's pooler has no
  ``aligned`` argument and infers the scales from the (unpadded) image sizes.
* :class:`MMDetRoIHeads`: L1 box loss (torchvision: smooth-L1 beta 1/9), no small-box filter at
  test (torchvision removes boxes under 0.01 px), labels returned 0-based.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import batched_nms, clip_boxes_to_image, roi_align
from torchvision.ops.poolers import MultiScaleRoIAlign

from rsbench.models.detection.rpn import at_least_fp32


def mmdet_roi_levels(boxes: Tensor, num_levels: int, finest_scale: float = 56.0) -> Tensor:
    """mmdet ``map_roi_levels``: ``floor(log2(sqrt(area) / 56 + 1e-6))`` clamped to the levels.

    Equals torchvision's ``LevelMapper(k_min=2, canonical_scale=224, canonical_level=4)`` up to where
    its 1e-6 sits (outside the log there).
    """
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, num_levels - 1).long()


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """RoIAlign over the FPN levels with fixed ``strides`` and ``aligned`` (half-pixel offset) as mmcv's."""

    def __init__(self, featmap_names: Sequence[str], strides: Sequence[int], output_size: int = 7,
                 sampling_ratio: int = 0, *, aligned: bool = True, finest_scale: float = 56.0) -> None:
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        if len(strides) != len(featmap_names):
            raise ValueError(f"{len(strides)} strides for {len(featmap_names)} maps")
        self.strides = [int(s) for s in strides]
        self.scales = [1.0 / s for s in self.strides]
        self.aligned = bool(aligned)
        self.finest_scale = float(finest_scale)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        feats = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
        levels = mmdet_roi_levels(rois[:, 1:], len(feats), self.finest_scale)
        out = feats[0].new_zeros((len(rois), feats[0].shape[1], *self.output_size))
        for level, (feat, scale) in enumerate(zip(feats, self.scales)):
            idx = torch.where(levels == level)[0]
            dtype = torch.promote_types(feat.dtype, rois.dtype)  # box coordinates never in half precision
            pooled = roi_align(feat.to(dtype), rois[idx].to(dtype), self.output_size, spatial_scale=scale,
                               sampling_ratio=self.sampling_ratio, aligned=self.aligned)
            out[idx] = pooled.to(out.dtype)
        return out


def shared2fc_box_head(in_channels: int, roi_size: int, representation_size: int,
                       num_classes: int) -> tuple[TwoMLPHead, FastRCNNPredictor]:
    """mmdet ``Shared2FCBBoxHead`` (``reg_class_agnostic=False``) with its initialisation.

    Shared FCs Xavier-uniform, cls fc N(0, 0.01), box fc N(0, 0.001), biases 0. ``num_classes``
    includes torchvision's background (index 0); its 4 box outputs are never used.
    """
    head = TwoMLPHead(in_channels * roi_size**2, representation_size)
    for fc in (head.fc6, head.fc7):
        nn.init.xavier_uniform_(fc.weight)
        nn.init.zeros_(fc.bias)
    predictor = FastRCNNPredictor(representation_size, num_classes)
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)
    return head, predictor


def fastrcnn_l1_loss(class_logits: Tensor, box_regression: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
    """mmdet ``BBoxHead.loss``: CE averaged over the sampled RoIs; class-specific L1 over the positives,
    summed and divided by the number of sampled RoIs (``avg_factor=bbox_targets.size(0)``)."""
    labels_all, targets_all = torch.cat(labels), torch.cat(regression_targets)
    n = max(labels_all.numel(), 1)
    loss_cls = F.cross_entropy(class_logits, labels_all, reduction="sum") / n
    pos = torch.where(labels_all > 0)[0]
    deltas = box_regression.reshape(len(labels_all), -1, 4)[pos, labels_all[pos]]
    return loss_cls, F.l1_loss(deltas, targets_all[pos], reduction="sum") / n


class MMDetRoIHeads(RoIHeads):
    """Box-only RoI heads: torchvision's sampling (512 @ 0.25, gt added), mmdet's loss and test output."""

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = (at_least_fp32(t) for t in self.box_predictor(x))
        if self.training:
            loss_cls, loss_box = fastrcnn_l1_loss(class_logits, box_regression, labels, regression_targets)
            return [], {"loss_cls": loss_cls, "loss_bbox": loss_box}
        return self.detect(class_logits, box_regression, proposals, image_shapes), {}

    def detect(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """mmdet ``multiclass_nms``: softmax, per-class boxes clipped to the image, score > thr, class-wise
        NMS, the best ``detections_per_img``. Labels 0-based (torchvision's background column dropped)."""
        counts = [len(p) for p in proposals]
        boxes_all = self.box_coder.decode(box_regression, proposals).split(counts)
        scores_all = F.softmax(class_logits, -1).split(counts)
        out = []
        for boxes, scores, shape in zip(boxes_all, scores_all, image_shapes):
            boxes = clip_boxes_to_image(boxes, shape)[:, 1:].reshape(-1, 4)
            labels = torch.arange(scores.shape[1] - 1, device=scores.device).repeat(len(scores))
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return out

