"""Oriented R-CNN (Xie et al., ICCV 2021) as MTP trains it with MMRotate 1.x, on rsbench's rotated ops.

``build_oriented_rcnn(backbone, num_classes, img_size=...)`` → :class:`OrientedRCNN`. Rotated boxes are
``(cx, cy, w, h, theta)`` pixels, theta radians clockwise on screen, le90 (``rsbench/models/ops/rbox.py``).
The settings (:data:`ORIENTED_RCNN_DIOR_R`, every key overridable by name) are MMRotate's
``oriented-rcnn-le90_r50_fpn_1x_dota.py`` / MTP's ``configs/mtp/dior-r/oriented_rcnn_*``
(``../shared/reference/mtp_recipes.md`` §2.3 and ``detection.md`` §5):

* **Neck**: the horizontal detectors' :class:`~rsbench.models.detection.fpn.DetectionBackbone` (mmdet FPN 256
  on strides 4-32 + P6 = max-pool of P5); the rsbench backbone at ``detector.backbone.body``.
* **Oriented RPN** (:class:`OrientedRPN`): 3x3 conv 256 + ReLU, 1x1 cls (3 anchors, sigmoid) and 1x1 reg
  (3 x 6 midpoint offsets), all N(0, 0.01); mmdet anchors (scale 8, ratios 0.5/1/2, strides 4-64,
  unrounded). Targets: only anchors fully inside the image (``allowed_border=0``: ``x1 >= 0``,
  ``y1 >= 0``, ``x2 < W``, ``y2 < H``, mmdet's ``anchor_inside_flags``) take part; max-IoU 0.7 / 0.3
  with ``min_pos_iou`` 0.3 low-quality matches (:class:`~rsbench.models.detection.matcher.MaxIoUMatcher`)
  against the gts' **horizontal** boxes (``RBbox2HBboxOverlaps2D``); 256 sampled at 0.5; targets
  :class:`~rsbench.models.ops.rbox_coders.MidpointOffsetCoder` (anchor, rotated gt). Losses: sigmoid CE and
  smooth-L1 (beta 1/9) summed and divided by the sampled anchors (max(#pos, 1) + max(#neg, 1), over
  the batch, as the horizontal RPN). Proposals (train and test, detached): per level the top 2000 by
  score, decoded, boxes with ``w, h > 0`` (``min_bbox_size=0``), NMS 0.8 on their horizontal boxes with
  the level as the class (mmcv ``batched_nms``: levels never suppress each other), the best 2000.
  The midpoint-offset decode uses the coder's ``rect="closed_form"`` (the stretched polygon's own
  sides, on the device; equal to MMRotate's ``cv2.minAreaRect`` up to float rounding; ``rpn_rect="cv2"``
  for the CPU loop).
* **RoI head** (:class:`RotatedRoIHead`): ``RoIAlignRotated`` 7x7, sampling 2, aligned, clockwise on
  strides 4-32, level ``floor(log2(sqrt(w h) / 56 + 1e-6))`` clamped to [0, 3] (``RotatedSingleRoIExtractor``);
  training: max-IoU 0.5 / 0.5 (no low-quality) with the rotated IoU (``RBboxOverlaps2D``, w, h >= 1e-3)
  on the proposals, then the gts prepended as proposals assigned to themselves (mmdet
  ``add_gt_as_proposals``), 512 sampled at 0.25. ``Shared2FCBBoxHead`` 1024 (Xavier-uniform), cls fc
  N(0, 0.01) over ``num_classes + 1`` (background last, as mmdet), class-agnostic reg fc N(0, 0.001)
  with 5 outputs, :class:`~rsbench.models.ops.rbox_coders.DeltaXYWHTRBoxCoder` (stds 0.1, 0.1, 0.2, 0.2,
  0.1, edge_swap, proj_xy). CE averaged over the sampled RoIs; smooth-L1 (beta 1) on the positives
  summed over the 5 deltas and divided by the sampled RoIs. Test: softmax, the box decoded once (centre
  clamped to the image) and shared by every class, score > 0.05, class-aware rotated NMS 0.1
  (:func:`~rsbench.models.ops.rotated_nms.batched_nms_rotated`), the best 2000.

Inputs are normalised ``(C, H, W)`` images at their own size, padded to a multiple of 32 inside
(:class:`~rsbench.models.detection.transform.PadOnlyTransform`, mmdet's ``pad_size_divisor=32``);
outputs are in input pixels. Labels are 0-based outside and inside (background = ``num_classes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, box_iou

from rsbench.models.detection.anchors import rpn_anchor_generator
from rsbench.models.detection.faster_rcnn import merge_settings
from rsbench.models.detection.fpn import DetectionBackbone
from rsbench.models.detection.matcher import MaxIoUMatcher
from rsbench.models.detection.rpn import at_least_fp32
from rsbench.models.detection.transform import PadOnlyTransform
from rsbench.models.ops.rbox import rbox_iou, rbox_to_hbox
from rsbench.models.ops.rbox_coders import DeltaXYWHTRBoxCoder, MidpointOffsetCoder
from rsbench.models.ops.roi_align_rotated import roi_align_rotated
from rsbench.models.ops.rotated_nms import batched_nms_rotated

__all__ = ["ORIENTED_RCNN_DIOR_R", "OrientedRCNN", "OrientedRPN", "OrientedRPNHead", "RotatedRoIHead",
           "anchor_inside_flags", "build_oriented_rcnn", "rotated_roi_levels"]

#: MTP's DIOR-R recipe (MMRotate 1.x ``oriented-rcnn-le90_r50_fpn``); every key can be overridden by name
ORIENTED_RCNN_DIOR_R: dict[str, Any] = {
    "fpn_channels": 256, "anchor_scale": 8.0, "anchor_ratios": (0.5, 1.0, 2.0), "anchor_strides": (4, 8, 16, 32, 64),
    "rpn_fg_iou_thresh": 0.7, "rpn_bg_iou_thresh": 0.3, "rpn_min_pos_iou": 0.3, "rpn_allowed_border": 0,
    "rpn_batch_size_per_image": 256, "rpn_positive_fraction": 0.5, "rpn_smooth_l1_beta": 1.0 / 9.0,
    "rpn_coder_stds": (1.0, 1.0, 1.0, 1.0, 0.5, 0.5), "rpn_rect": "closed_form",
    "rpn_pre_nms_top_n_train": 2000, "rpn_post_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 2000, "rpn_post_nms_top_n_test": 2000, "rpn_nms_thresh": 0.8, "rpn_min_bbox_size": 0.0,
    "roi_output_size": 7, "roi_sampling_ratio": 2, "roi_aligned": True, "roi_clockwise": True,
    "roi_finest_scale": 56.0, "representation_size": 1024,
    "box_fg_iou_thresh": 0.5, "box_bg_iou_thresh": 0.5, "box_batch_size_per_image": 512,
    "box_positive_fraction": 0.25, "box_add_gt_as_proposals": True,
    "box_coder_stds": (0.1, 0.1, 0.2, 0.2, 0.1), "box_smooth_l1_beta": 1.0,
    "box_score_thresh": 0.05, "box_nms_thresh": 0.1, "box_detections_per_img": 2000,
    "size_divisible": 32,
}


def anchor_inside_flags(anchors: Tensor, image_size: Sequence[int], allowed_border: float = 0) -> Tensor:
    """mmdet ``anchor_inside_flags``: anchors ``(N, 4)`` within ``allowed_border`` px of the ``(H, W)`` image
    (``x1 >= -b``, ``y1 >= -b``, ``x2 < W + b``, ``y2 < H + b``); a negative border keeps every anchor."""
    if allowed_border < 0:
        return torch.ones(anchors.shape[0], dtype=torch.bool, device=anchors.device)
    h, w = int(image_size[0]), int(image_size[1])
    b = float(allowed_border)
    return (anchors[:, 0] >= -b) & (anchors[:, 1] >= -b) & (anchors[:, 2] < w + b) & (anchors[:, 3] < h + b)


def rotated_roi_levels(rboxes: Tensor, num_levels: int, finest_scale: float = 56.0) -> Tensor:
    """MMRotate ``RotatedSingleRoIExtractor.map_roi_levels``: ``floor(log2(sqrt(w h) / finest_scale + 1e-6))``
    of the rotated boxes ``(K, 5)`` (their own w, h, not the enclosing box's), clamped to the levels."""
    scale = torch.sqrt(rboxes[:, 2] * rboxes[:, 3])
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, num_levels - 1).long()


class OrientedRPNHead(nn.Module):
    """mmdet ``RPNHead`` with 6 outputs per anchor (MMRotate ``OrientedRPNHead``): conv3x3 + ReLU, 1x1 cls, 1x1 reg."""

    def __init__(self, in_channels: int, num_anchors: int, feat_channels: int | None = None) -> None:
        super().__init__()
        feat_channels = int(feat_channels or in_channels)
        self.conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(feat_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(feat_channels, num_anchors * 6, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):  # mmdet RPNHead init_cfg: Normal(std=0.01)
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, deltas = [], []
        for f in feats:
            t = F.relu(self.conv(f))
            logits.append(at_least_fp32(self.cls_logits(t)))
            deltas.append(at_least_fp32(self.bbox_pred(t)))
        return logits, deltas


class OrientedRPN(nn.Module):
    """Anchors, training targets and losses, and rotated proposals of the oriented RPN (module docstring)."""

    def __init__(self, c: dict[str, Any], in_channels: int) -> None:
        super().__init__()
        self.anchor_generator = rpn_anchor_generator(c["anchor_scale"], c["anchor_ratios"], c["anchor_strides"])
        self.num_anchors = self.anchor_generator.num_anchors_per_location()[0]
        self.head = OrientedRPNHead(in_channels, self.num_anchors)
        self.matcher = MaxIoUMatcher(c["rpn_fg_iou_thresh"], c["rpn_bg_iou_thresh"], min_pos_iou=c["rpn_min_pos_iou"])
        self.sampler = BalancedPositiveNegativeSampler(c["rpn_batch_size_per_image"], c["rpn_positive_fraction"])
        self.coder = MidpointOffsetCoder(target_stds=c["rpn_coder_stds"], rect=c["rpn_rect"])
        self.allowed_border = float(c["rpn_allowed_border"])
        self.beta = float(c["rpn_smooth_l1_beta"])
        self.pre_nms = {True: int(c["rpn_pre_nms_top_n_train"]), False: int(c["rpn_pre_nms_top_n_test"])}
        self.post_nms = {True: int(c["rpn_post_nms_top_n_train"]), False: int(c["rpn_post_nms_top_n_test"])}
        self.nms_thresh = float(c["rpn_nms_thresh"])
        self.min_size = float(c["rpn_min_bbox_size"])

    # -- targets --------------------------------------------------------------------------------
    def assign(self, anchors: Tensor, image_size: Sequence[int], gt_rboxes: Tensor) -> tuple[Tensor, Tensor]:
        """``(labels, matched)`` for ``anchors`` ``(A, 4)``: labels 1 positive, 0 negative, -1 no target (outside
        the image or between the thresholds); ``matched`` the gt index of each anchor (valid where positive)."""
        labels = torch.full((anchors.shape[0],), -1.0, device=anchors.device)
        matched = torch.zeros(anchors.shape[0], dtype=torch.long, device=anchors.device)
        inside = torch.where(anchor_inside_flags(anchors, image_size, self.allowed_border))[0]
        if inside.numel() == 0:
            return labels, matched
        if gt_rboxes.shape[0] == 0:
            labels[inside] = 0.0
            return labels, matched
        iou = box_iou(rbox_to_hbox(gt_rboxes.to(anchors.dtype)), anchors[inside])  # RBbox2HBboxOverlaps2D
        m = self.matcher(iou)
        labels[inside] = torch.where(m >= 0, 1.0, torch.where(m == -1, 0.0, -1.0))
        matched[inside] = m.clamp(min=0)
        return labels, matched

    def loss(self, anchors: list[Tensor], logits: Tensor, deltas: Tensor, image_sizes: list[tuple[int, int]],
             targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        labels, regression = [], []
        for a, size, t in zip(anchors, image_sizes, targets):
            lab, idx = self.assign(a, size, t["boxes"])
            reg = a.new_zeros((a.shape[0], 6))
            pos = torch.where(lab == 1)[0]
            if pos.numel():
                reg[pos] = self.coder.encode(a[pos], t["boxes"][idx[pos]].to(a.dtype)).to(reg.dtype)
            labels.append(lab)
            regression.append(reg)
        pos_masks, neg_masks = self.sampler(labels)
        avg = sum(p.sum().clamp(min=1) + n.sum().clamp(min=1) for p, n in zip(pos_masks, neg_masks))
        pos_all, neg_all = torch.cat(pos_masks).bool(), torch.cat(neg_masks).bool()
        sampled = torch.where(pos_all | neg_all)[0]
        pos_idx = torch.where(pos_all)[0]
        lab_all, reg_all = torch.cat(labels), torch.cat(regression)
        loss_cls = F.binary_cross_entropy_with_logits(logits.reshape(-1)[sampled], lab_all[sampled], reduction="sum")
        loss_box = F.smooth_l1_loss(deltas.reshape(-1, 6)[pos_idx], reg_all[pos_idx].to(deltas.dtype),
                                    beta=self.beta, reduction="sum")
        return {"loss_rpn_cls": loss_cls / avg, "loss_rpn_bbox": loss_box / avg}

    # -- proposals ------------------------------------------------------------------------------
    @torch.no_grad()
    def proposals(self, anchors: list[Tensor], logits: list[Tensor], deltas: list[Tensor],
                  counts: list[int]) -> list[Tensor]:
        """Per image: rotated proposals ``(K, 5)`` by decreasing score (module docstring)."""
        pre, post = self.pre_nms[self.training], self.post_nms[self.training]
        out = []
        for i, a_img in enumerate(anchors):
            a_lvls = a_img.split(counts)
            scores, boxes, levels, hanchors = [], [], [], []
            for lvl, (a, lg, dl) in enumerate(zip(a_lvls, logits, deltas)):
                s = lg[i].sigmoid()
                if s.numel() > pre:
                    s, order = torch.sort(s, descending=True, stable=True)
                    s, order = s[:pre], order[:pre]
                else:
                    order = None
                d, aa = (dl[i], a) if order is None else (dl[i][order], a[order])
                scores.append(s)
                boxes.append(d)
                hanchors.append(aa)
                levels.append(torch.full_like(s, lvl, dtype=torch.long))
            s, lv = torch.cat(scores), torch.cat(levels)
            dec = self.coder.decode(torch.cat(hanchors).float(), torch.cat(boxes).float())
            valid = (dec[:, 2] > self.min_size) & (dec[:, 3] > self.min_size)
            if not bool(valid.all()):
                dec, s, lv = dec[valid], s[valid], lv[valid]
            keep = batched_nms(rbox_to_hbox(dec), s.float(), lv, self.nms_thresh)[:post]
            out.append(dec[keep])
        return out

    def forward(self, images: ImageList, feats: list[Tensor],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        logits, deltas = self.head(feats)
        anchors = self.anchor_generator(images, feats)
        b = len(anchors)
        counts = [lg.shape[-2] * lg.shape[-1] * self.num_anchors for lg in logits]
        # (B, A, H, W) → (B, H*W*A); (B, A*6, H, W) → (B, H*W*A, 6): mmdet's (y, x, anchor) order
        flat_logits = [lg.permute(0, 2, 3, 1).reshape(b, -1) for lg in logits]
        flat_deltas = [dl.permute(0, 2, 3, 1).reshape(b, -1, 6) for dl in deltas]
        props = self.proposals(anchors, [t.detach() for t in flat_logits], [t.detach() for t in flat_deltas], counts)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            losses = self.loss(anchors, torch.cat(flat_logits, 1), torch.cat(flat_deltas, 1), images.image_sizes,
                               targets)
        return props, losses


class RotatedRoIHead(nn.Module):
    """RoIAlignRotated on the FPN levels, ``Shared2FCBBoxHead`` with class-agnostic rotated regression,
    mmdet's sampling, losses and test-time ``multiclass_nms`` with rotated NMS (module docstring)."""

    def __init__(self, c: dict[str, Any], in_channels: int, num_classes: int, strides: Sequence[int]) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.strides = [int(s) for s in strides]
        self.output_size = int(c["roi_output_size"])
        self.sampling_ratio, self.aligned = int(c["roi_sampling_ratio"]), bool(c["roi_aligned"])
        self.clockwise, self.finest_scale = bool(c["roi_clockwise"]), float(c["roi_finest_scale"])
        rep = int(c["representation_size"])
        self.box_head = TwoMLPHead(in_channels * self.output_size**2, rep)
        for fc in (self.box_head.fc6, self.box_head.fc7):  # mmdet Shared2FCBBoxHead: Xavier-uniform, bias 0
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        self.cls_score = nn.Linear(rep, self.num_classes + 1)
        self.bbox_pred = nn.Linear(rep, 5)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.matcher = MaxIoUMatcher(c["box_fg_iou_thresh"], c["box_bg_iou_thresh"], allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(c["box_batch_size_per_image"], c["box_positive_fraction"])
        self.add_gt = bool(c["box_add_gt_as_proposals"])
        self.coder = DeltaXYWHTRBoxCoder(target_stds=c["box_coder_stds"])
        self.beta = float(c["box_smooth_l1_beta"])
        self.score_thresh, self.nms_thresh = float(c["box_score_thresh"]), float(c["box_nms_thresh"])
        self.detections_per_img = int(c["box_detections_per_img"])

    def pool(self, feats: list[Tensor], rois: list[Tensor]) -> Tensor:
        """``(K, C, 7, 7)`` features of the rotated RoIs (one ``(k_i, 5)`` tensor per image)."""
        r = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(rois)])
        levels = rotated_roi_levels(r[:, 1:], len(self.strides), self.finest_scale)
        dtype = torch.promote_types(feats[0].dtype, torch.float32)  # box coordinates never in half precision
        out = feats[0].new_zeros((len(r), feats[0].shape[1], self.output_size, self.output_size), dtype=dtype)
        for lvl, (feat, stride) in enumerate(zip(feats, self.strides)):
            idx = torch.where(levels == lvl)[0]
            if idx.numel():
                out[idx] = roi_align_rotated(feat.to(dtype), r[idx].to(dtype), self.output_size, 1.0 / stride,
                                             self.sampling_ratio, self.aligned, self.clockwise)
        return out

    def predict_raw(self, feats: list[Tensor], rois: list[Tensor]) -> tuple[Tensor, Tensor]:
        x = self.box_head(self.pool(feats, rois).to(feats[0].dtype))
        return at_least_fp32(self.cls_score(x)), at_least_fp32(self.bbox_pred(x))

    def sample(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
               ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per image: sampled RoIs ``(k, 5)`` (positives first), labels (``num_classes`` = background) and
        the regression targets ``(k, 5)`` (zeros for negatives)."""
        match_labels, all_rois, all_labels, all_targets = [], [], [], []
        gt_of = []
        for props, t in zip(proposals, targets):
            gt, gl = t["boxes"].to(props.dtype), t["labels"].long()
            if gt.shape[0]:
                m = self.matcher(rbox_iou(gt, props))  # RBboxOverlaps2D (w, h >= 1e-3); on the CPU only pairs that meet
            else:
                m = torch.full((props.shape[0],), -1, dtype=torch.long, device=props.device)
            if self.add_gt and gt.shape[0]:
                props = torch.cat([gt, props])
                m = torch.cat([torch.arange(gt.shape[0], device=m.device), m])
            match_labels.append(torch.where(m >= 0, 1, torch.where(m == -1, 0, -1)))
            all_rois.append(props)
            gt_of.append((gt, gl, m))
        pos_masks, neg_masks = self.sampler(match_labels)
        rois_out = []
        for rois, (gt, gl, m), p, n in zip(all_rois, gt_of, pos_masks, neg_masks):
            pos, neg = torch.where(p.bool())[0], torch.where(n.bool())[0]
            rois_out.append(torch.cat([rois[pos], rois[neg]]))
            labels = torch.full((pos.numel() + neg.numel(),), self.num_classes, dtype=torch.long, device=rois.device)
            tgt = rois.new_zeros((labels.numel(), 5))
            if pos.numel():
                labels[: pos.numel()] = gl[m[pos]]
                # a zero-width gt (collinear corners, kept by the DOTA loaders) as its own proposal: log(0/0);
                # its target is the identity, 0 (other RoIs never reach IoU 0.5 with it: w, h clamped to 1e-3)
                enc = self.coder.encode(rois[pos], gt[m[pos]])
                tgt[: pos.numel()] = torch.nan_to_num(enc, nan=0.0).to(tgt.dtype)
            all_labels.append(labels)
            all_targets.append(tgt)
        return rois_out, all_labels, all_targets

    def forward(self, feats: list[Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            rois, labels, reg_targets = self.sample(proposals, targets)
            logits, deltas = self.predict_raw(feats, rois)
            lab, tgt = torch.cat(labels), torch.cat(reg_targets)
            n = max(lab.numel(), 1)
            pos = torch.where(lab < self.num_classes)[0]
            loss_cls = F.cross_entropy(logits, lab, reduction="sum") / n
            loss_box = F.smooth_l1_loss(deltas[pos], tgt[pos].to(deltas.dtype), beta=self.beta, reduction="sum") / n
            return [], {"loss_cls": loss_cls, "loss_bbox": loss_box}
        logits, deltas = self.predict_raw(feats, proposals)
        return self.detect(logits, deltas, proposals, image_sizes), {}

    def detect(self, logits: Tensor, deltas: Tensor, proposals: list[Tensor],
               image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """mmdet ``multiclass_nms`` on rotated boxes: the class-agnostic box for every class, score > thr,
        class-aware rotated NMS, the best ``detections_per_img``; labels 0-based."""
        counts = [len(p) for p in proposals]
        out = []
        for p, lg, dl, size in zip(proposals, logits.split(counts), deltas.split(counts), image_sizes):
            scores = F.softmax(lg, dim=-1)[:, : self.num_classes]
            boxes = self.coder.decode(p.to(dl.dtype), dl, max_shape=size) if len(p) else dl.new_zeros((0, 5))
            cand, labels = torch.where(scores > self.score_thresh)
            b, s = boxes[cand], scores[cand, labels]
            keep = batched_nms_rotated(b, s, labels, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": b[keep].float(), "scores": s[keep].float(), "labels": labels[keep]})
        return out


class OrientedRCNN(nn.Module):
    """Oriented R-CNN (module docstring). ``forward(images, targets=None)``: training →
    ``{loss_rpn_cls, loss_rpn_bbox, loss_cls, loss_bbox}``; eval → one ``{boxes (K, 5), scores, labels}``
    per image (0-based labels). ``backbone.body`` is the rsbench backbone, ``backbone.fpn`` the neck."""

    def __init__(self, backbone: DetectionBackbone, rpn: OrientedRPN, roi_heads: RotatedRoIHead,
                 transform: nn.Module, *, num_classes: int, img_size: Any = None,
                 settings: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone, self.rpn, self.roi_heads, self.transform = backbone, rpn, roi_heads, transform
        self.num_classes = int(num_classes)
        self.img_size = img_size
        self.settings = dict(settings or {})

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            for t in targets:
                boxes = t["boxes"]
                if boxes.ndim != 2 or boxes.shape[-1] != 5:
                    raise ValueError(f"target boxes must be (N, 5) rotated boxes, got {tuple(boxes.shape)}")
                if t["labels"].numel() and (t["labels"].min() < 0 or t["labels"].max() >= self.num_classes):
                    raise ValueError(f"labels must lie in [0, {self.num_classes}), got {t['labels'].unique().tolist()}")
            targets = [{"boxes": t["boxes"].float(), "labels": t["labels"].long()} for t in targets]
        image_list, targets = self.transform(images, targets)
        feats = list(self.backbone(image_list.tensors).values())
        proposals, rpn_losses = self.rpn(image_list, feats, targets)
        detections, roi_losses = self.roi_heads(feats[: len(self.roi_heads.strides)], proposals,
                                                image_list.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return detections


def build_oriented_rcnn(backbone: nn.Module, num_classes: int, *, img_size: Any, **overrides: Any) -> OrientedRCNN:
    """Oriented R-CNN + FPN on rsbench pyramid ``backbone`` (4 maps at strides 4-32), MTP's DIOR-R settings."""
    c = merge_settings(ORIENTED_RCNN_DIOR_R, overrides, "oriented_rcnn")
    neck = DetectionBackbone(backbone, c["fpn_channels"], start_level=0, extra="maxpool")
    if [int(s) for s in neck.strides] != [int(s) for s in c["anchor_strides"]]:
        raise ValueError(f"anchor strides {list(c['anchor_strides'])} differ from the FPN's {list(neck.strides)}")
    rpn = OrientedRPN(c, neck.out_channels)
    roi_heads = RotatedRoIHead(c, neck.out_channels, num_classes, neck.strides[:4])
    return OrientedRCNN(neck, rpn, roi_heads, PadOnlyTransform(c["size_divisible"]), num_classes=num_classes,
                        img_size=img_size, settings=c)

