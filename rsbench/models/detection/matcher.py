"""MMDetection's ``MaxIoUAssigner`` (``gt_max_assign_all=True``) as a torchvision :class:`Matcher`.

The two differ only in the low-quality rule. torchvision gives every anchor that is some gt's best
(ties included) to *the anchor's own best gt*, at any IoU. mmdet loops over the gts in order and,
if gt ``i``'s best IoU is at least ``min_pos_iou``, gives all of gt ``i``'s best anchors (ties
included) to *gt i*; a later gt overwrites an earlier one. So with the DIOR RPN's
``min_pos_iou=0.3`` a gt smaller than ~17 px (IoU < 0.3 with every 32 px anchor) gets no positive.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection._utils import Matcher


class MaxIoUMatcher(Matcher):
    """``Matcher(high, low)`` with mmdet's low-quality rule (``match_low_quality``, ``min_pos_iou``).

    Settings: DIOR RPN 0.7 / 0.3 / ``min_pos_iou=0.3``; xView RetinaNet 0.5 / 0.4 / 0; RoI heads
    0.5 / 0.5 without low-quality matches. One deliberate difference: a gt whose best IoU is 0 (a
    degenerate or off-image box) gets no low-quality anchors, where mmdet with ``min_pos_iou=0``
    would give it every anchor it does not overlap.
    """

    def __init__(self, high_threshold: float, low_threshold: float, *, min_pos_iou: float = 0.0,
                 allow_low_quality_matches: bool = True) -> None:
        super().__init__(high_threshold, low_threshold, allow_low_quality_matches=allow_low_quality_matches)
        self.min_pos_iou = float(min_pos_iou)

    def set_low_quality_matches_(self, matches: Tensor, all_matches: Tensor, match_quality_matrix: Tensor) -> None:
        best_per_gt = match_quality_matrix.max(dim=1).values
        eligible = (best_per_gt >= self.min_pos_iou) & (best_per_gt > 0)
        gt_idx, pred_idx = torch.where((match_quality_matrix == best_per_gt[:, None]) & eligible[:, None])
        if gt_idx.numel() == 0:
            return
        # the loop's "later gt wins", deterministic on every device
        winner = torch.full_like(matches, -1).scatter_reduce(0, pred_idx, gt_idx, reduce="amax")
        hit = winner >= 0
        matches[hit] = winner[hit]
