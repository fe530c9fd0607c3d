"""The DIOR RPN: torchvision's :class:`RegionProposalNetwork` with MMDetection's assigner and L1 loss.

mmdet ``RPNHead`` (one 3x3 conv + ReLU, normal(0.01) init = torchvision :class:`RPNHead`),
``MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3)``, ``RandomSampler(256, 0.5)``, sigmoid CE +
``L1Loss``, both divided by the sampling result's ``avg_factor`` = max(#pos, 1) + max(#neg, 1)
summed over the images (torchvision: smooth-L1 with beta 1/9 over #sampled).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from rsbench.models.detection.matcher import MaxIoUMatcher

#: mmdet ``min_bbox_size=0`` keeps proposals with w, h > 0; torchvision keeps w, h >= ``min_size`` (1e-3)
MIN_PROPOSAL_SIZE = 1e-6


def at_least_fp32(t: Tensor) -> Tensor:
    """Head outputs leave autocast's half precision before boxes are decoded from them (800 px in fp16: 0.5 px)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class FP32RPNHead(RPNHead):
    """torchvision's :class:`RPNHead` (= mmdet's) whose outputs are at least float32."""

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, deltas = super().forward(x)
        return [at_least_fp32(t) for t in logits], [at_least_fp32(t) for t in deltas]


class MMDetRPN(RegionProposalNetwork):
    """Proposals as torchvision makes them (per-level top-k, clip, per-level NMS); training as mmdet's."""

    def __init__(self, *args, min_pos_iou: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        m = self.proposal_matcher
        self.proposal_matcher = MaxIoUMatcher(m.high_threshold, m.low_threshold, min_pos_iou=min_pos_iou)
        self.min_size = MIN_PROPOSAL_SIZE

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        pos, neg = self.fg_bg_sampler(labels)
        return rpn_l1_loss(objectness, pred_bbox_deltas, labels, regression_targets, pos, neg)


def rpn_l1_loss(objectness: Tensor, deltas: Tensor, labels: list[Tensor], targets: list[Tensor],
                pos: list[Tensor], neg: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Sigmoid CE over the sampled anchors and L1 over the positive ones, both summed / mmdet's avg_factor."""
    avg_factor = sum(p.sum().clamp(min=1) + n.sum().clamp(min=1) for p, n in zip(pos, neg))
    pos_all, neg_all = torch.cat(pos).bool(), torch.cat(neg).bool()
    sampled = torch.where(pos_all | neg_all)[0]
    pos_idx = torch.where(pos_all)[0]
    labels_all, targets_all = torch.cat(labels), torch.cat(targets)
    loss_cls = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels_all[sampled], reduction="sum")
    loss_box = F.l1_loss(deltas[pos_idx], targets_all[pos_idx], reduction="sum")
    return loss_cls / avg_factor, loss_box / avg_factor
