"""Oriented R-CNN (rsbench/models/detection/oriented_rcnn.py): it trains, predicts le90 boxes, handles images
without objects, and its MMRotate-specific rules give answers computed independently here in NumPy:
``allowed_border=0``, RPN assignment on the gt's horizontal box, RoI levels by ``finest_scale`` 56 on the
rotated box's own size, the class-agnostic ``DeltaXYWHTRBBoxCoder`` decode shared by every class."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsbench.models import build_backbone
from rsbench.models.detection.oriented_rcnn import (
    ORIENTED_RCNN_DIOR_R,
    build_oriented_rcnn,
    rotated_roi_levels,
)
from rsbench.models.ops.rbox import rbox_iou
from rsbench.models.ops.roi_align_rotated import roi_align_rotated

#: a small head (the recipe's structure, narrower) so the CPU tests stay fast
SMALL = {"fpn_channels": 32, "representation_size": 64, "rpn_post_nms_top_n_train": 300,
         "rpn_post_nms_top_n_test": 300}
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone("resnet18", img_size=96, features="pyramid")


def _model(backbone, **kw):
    import copy

    torch.manual_seed(0)
    return build_oriented_rcnn(copy.deepcopy(backbone), NUM_CLASSES, img_size=96, **{**SMALL, **kw})


def _data():
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(3, 96, 96, generator=g), torch.randn(3, 96, 80, generator=g)]
    targets = [{"boxes": torch.tensor([[40.0, 44.0, 46.0, 20.0, 0.4], [70.0, 30.0, 30.0, 24.0, -1.2]]),
                "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[40.0, 50.0, 40.0, 30.0, 1.0]]), "labels": torch.tensor([1])}]
    return images, targets


def test_settings_are_the_recipe():
    c = ORIENTED_RCNN_DIOR_R
    assert c["rpn_allowed_border"] == 0 and c["rpn_nms_thresh"] == 0.8 and c["rpn_pre_nms_top_n_train"] == 2000
    assert c["rpn_post_nms_top_n_test"] == 2000 and c["roi_finest_scale"] == 56 and c["roi_sampling_ratio"] == 2
    assert c["box_nms_thresh"] == 0.1 and c["box_score_thresh"] == 0.05 and c["box_detections_per_img"] == 2000
    assert c["box_coder_stds"] == (0.1, 0.1, 0.2, 0.2, 0.1) and math.isclose(c["rpn_smooth_l1_beta"], 1 / 9)


def test_structure(backbone):
    m = _model(backbone, fpn_channels=256, representation_size=1024)
    assert m.backbone.body.__class__ is backbone.__class__
    assert [int(s) for s in m.backbone.strides] == [4, 8, 16, 32, 64]
    h = m.rpn.head
    assert h.cls_logits.out_channels == 3 and h.bbox_pred.out_channels == 18 and h.conv.out_channels == 256
    r = m.roi_heads
    assert r.box_head.fc6.in_features == 256 * 49 and r.box_head.fc7.out_features == 1024
    assert r.cls_score.out_features == NUM_CLASSES + 1 and r.bbox_pred.out_features == 5  # class-agnostic
    assert float(r.bbox_pred.weight.detach().std()) < 0.002 and 0.005 < float(r.cls_score.weight.detach().std()) < 0.02


def test_trains_and_loss_decreases(backbone):
    m = _model(backbone).train()
    images, targets = _data()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4)
    totals = []
    for _ in range(6):
        torch.manual_seed(0)  # the same sampled anchors and RoIs each step
        losses = m(images, targets)
        assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"}
        assert all(torch.isfinite(v) for v in losses.values())
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        if not totals:
            grads = [p.grad for p in m.backbone.body.parameters() if p.requires_grad]
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        opt.step()
        totals.append(float(loss.detach()))
    assert totals[-1] < totals[0]


def test_empty_targets(backbone):
    m = _model(backbone).train()
    images, _ = _data()
    empty = [{"boxes": torch.zeros(0, 5), "labels": torch.zeros(0, dtype=torch.long)} for _ in images]
    losses = m(images, empty)
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["loss_rpn_bbox"].detach()) == 0 and float(losses["loss_bbox"].detach()) == 0
    assert float(losses["loss_rpn_cls"].detach()) > 0 and float(losses["loss_cls"].detach()) > 0
    sum(losses.values()).backward()


def test_predicts_le90(backbone):
    m = _model(backbone).eval()
    with torch.no_grad():
        m.roi_heads.cls_score.bias[0] = 4.0  # make class 0 score above 0.05 everywhere
        out = m(_data()[0])
    assert len(out) == 2
    for o in out:
        b, s, lab = o["boxes"], o["scores"], o["labels"]
        assert b.ndim == 2 and b.shape[1] == 5 and 0 < len(b) <= 2000 and len(s) == len(lab) == len(b)
        assert (s > 0.05).all() and (s[:-1] >= s[1:]).all()
        assert lab.dtype == torch.long and ((lab >= 0) & (lab < NUM_CLASSES)).all()
        assert (b[:, 2] >= b[:, 3]).all() and (b[:, 4] >= -math.pi / 2).all() and (b[:, 4] < math.pi / 2).all()


# -- known answers ------------------------------------------------------------------------------
def _np_level_anchors(stride: int, h: int, w: int) -> np.ndarray:
    """mmdet AnchorGenerator, scale 8, ratios (0.5, 1, 2), centre offset 0, (y, x, ratio) order, unrounded."""
    size = 8.0 * stride
    base = []
    for r in (0.5, 1.0, 2.0):
        aw, ah = size / math.sqrt(r), size * math.sqrt(r)
        base.append([-aw / 2, -ah / 2, aw / 2, ah / 2])
    out = [[x * stride + b[0], y * stride + b[1], x * stride + b[2], y * stride + b[3]]
           for y in range(h) for x in range(w) for b in base]
    return np.asarray(out, np.float64)


def _np_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _np_hbox(r: np.ndarray) -> np.ndarray:
    c, s = np.abs(np.cos(r[:, 4])), np.abs(np.sin(r[:, 4]))
    hx, hy = r[:, 2] / 2 * c + r[:, 3] / 2 * s, r[:, 2] / 2 * s + r[:, 3] / 2 * c
    return np.stack([r[:, 0] - hx, r[:, 1] - hy, r[:, 0] + hx, r[:, 1] + hy], 1)


def test_rpn_anchors_and_allowed_border(backbone):
    """Anchors as mmdet's; anchors not fully inside the image get no target; the rest as mmdet's
    MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3) on the gts' horizontal boxes."""
    m = _model(backbone).train()
    from torchvision.models.detection.image_list import ImageList

    H, W = 60, 54  # not multiples of 32: the padded 64 x 64 batch is larger than the image
    sizes = (16, 8, 4, 2, 1)
    feats = [torch.zeros(1, 1, n, n) for n in sizes]
    anchors = m.rpn.anchor_generator(ImageList(torch.zeros(1, 3, 64, 64), [(H, W)]), feats)[0]
    expect = np.concatenate([_np_level_anchors(s, n, n) for s, n in zip((4, 8, 16, 32, 64), sizes)])
    np.testing.assert_allclose(anchors.numpy(), expect, atol=1e-5)

    gt = np.array([[26.0, 30.0, 36.0, 18.0, 0.5], [40.0, 20.0, 20.0, 12.0, -0.3]])
    labels, matched = m.rpn.assign(anchors.double(), (H, W), torch.tensor(gt))
    inside = (expect[:, 0] >= 0) & (expect[:, 1] >= 0) & (expect[:, 2] < W) & (expect[:, 3] < H)
    assert 0 < inside.sum() < len(expect)
    want = np.full(len(expect), -1.0)
    want_gt = np.zeros(len(expect), np.int64)
    idx = np.flatnonzero(inside)
    iou = _np_iou(_np_hbox(gt), expect[idx])  # (gts, inside anchors)
    best, arg = iou.max(0), iou.argmax(0)
    want[idx[best < 0.3]] = 0.0
    want[idx[best >= 0.7]] = 1.0
    want_gt[idx] = arg
    for j in range(len(gt)):  # low-quality matches, later gts win
        if iou[j].max() >= 0.3:
            hit = idx[iou[j] == iou[j].max()]
            want[hit], want_gt[hit] = 1.0, j
    np.testing.assert_array_equal(labels.numpy(), want)
    pos = want == 1
    assert pos.any()
    np.testing.assert_array_equal(matched.numpy()[pos], want_gt[pos])
    assert (labels.numpy()[~inside] == -1).all()


def test_rpn_assigns_on_the_horizontal_box():
    """A 45-degree square: the anchor equal to its enclosing box is positive (horizontal IoU 1), though
    their rotated IoU is only 0.5; a quarter of that box (horizontal IoU 0.25) is negative."""
    from rsbench.models.detection.oriented_rcnn import OrientedRPN

    rpn = OrientedRPN(dict(ORIENTED_RCNN_DIOR_R), 8)
    gt = torch.tensor([[50.0, 50.0, 40.0, 40.0, math.pi / 4]], dtype=torch.float64)
    half = 20.0 * math.sqrt(2.0)
    anchors = torch.tensor([[50 - half, 50 - half, 50 + half, 50 + half], [50 - half, 50 - half, 50.0, 50.0]],
                           dtype=torch.float64)
    labels, matched = rpn.assign(anchors, (100, 100), gt)
    assert labels.tolist() == [1.0, 0.0] and int(matched[0]) == 0
    as_rbox = torch.tensor([[50.0, 50.0, 2 * half, 2 * half, 0.0]], dtype=torch.float64)
    assert abs(float(rbox_iou(as_rbox, gt)[0, 0]) - 0.5) < 1e-5
    # its midpoint-offset target: the enclosing box is the anchor, the vertices at the edges' midpoints
    np.testing.assert_allclose(rpn.coder.encode(anchors[:1], gt).numpy(), np.zeros((1, 6)), atol=1e-7)


def test_roi_levels_by_finest_scale():
    boxes = torch.tensor([[0, 0, 200.0, 50.0, 0.7],   # sqrt = 100 -> log2(1.79) -> 0
                          [0, 0, 224.0, 56.0, -1.0],  # sqrt = 112 -> exactly 1 (the +1e-6)
                          [0, 0, 10.0, 10.0, 0.0],    # small -> clamped to 0
                          [0, 0, 448.0, 224.0, 0.2],  # sqrt = 316.8 -> 2
                          [0, 0, 900.0, 700.0, 0.0]])  # -> clamped to 3
    s = np.sqrt(boxes[:, 2].numpy().astype(np.float64) * boxes[:, 3].numpy())
    want = np.clip(np.floor(np.log2(s / 56 + 1e-6)), 0, 3)
    assert rotated_roi_levels(boxes, 4).tolist() == want.astype(int).tolist() == [0, 1, 0, 2, 3]
    # the enclosing box of the first (rotated 0.7 rad) would map to level 1 in the horizontal extractor
    c, sn = math.cos(0.7), math.sin(0.7)
    assert math.floor(math.log2(math.sqrt((200 * c + 50 * sn) * (200 * sn + 50 * c)) / 56 + 1e-6)) == 1


def test_roi_pool_uses_the_mapped_level(backbone):
    m = _model(backbone)
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, 4, 64 // s, 64 // s, generator=g) for s in (4, 8, 16, 32)]
    rois = torch.tensor([[30.0, 30.0, 224.0, 56.0, 0.3], [20.0, 24.0, 20.0, 12.0, -0.4]])
    out = m.roi_heads.pool(feats, [rois])
    ref1 = roi_align_rotated(feats[1], torch.cat([torch.zeros(1, 1), rois[:1]], 1), 7, 1 / 8, 2, True, True)
    ref0 = roi_align_rotated(feats[0], torch.cat([torch.zeros(1, 1), rois[1:]], 1), 7, 1 / 4, 2, True, True)
    torch.testing.assert_close(out[:1], ref1)
    torch.testing.assert_close(out[1:], ref0)


def test_class_agnostic_decode(backbone):
    """One proposal, fixed head outputs: every class above 0.05 gets the same decoded box (hand NumPy
    DeltaXYWHTRBBoxCoder with proj_xy and stds), and class-aware NMS keeps them all."""
    m = _model(backbone).eval()
    r = m.roi_heads
    d = np.array([0.5, -0.3, 0.2, 0.1, 0.4])
    with torch.no_grad():
        r.bbox_pred.weight.zero_()
        r.bbox_pred.bias.copy_(torch.tensor(d))
        r.cls_score.weight.zero_()
        r.cls_score.bias.copy_(torch.tensor([-10.0, math.log(4.0), math.log(4.0), 0.0]))  # bg last
    p = np.array([40.0, 30.0, 20.0, 10.0, 0.3])
    feats = [torch.randn(1, 32, 64 // s, 64 // s) for s in (4, 8, 16, 32)]
    with torch.no_grad():
        out = r(feats, [torch.tensor(p[None], dtype=torch.float32)], [(100, 100)])[0][0]
    dx, dy, dw, dh, da = d * np.array([0.1, 0.1, 0.2, 0.2, 0.1])
    px, py, pw, ph, pa = p
    gx = dx * pw * math.cos(pa) - dy * ph * math.sin(pa) + px
    gy = dx * pw * math.sin(pa) + dy * ph * math.cos(pa) + py
    want = np.array([gx, gy, pw * math.exp(dw), ph * math.exp(dh), pa + da])
    assert sorted(out["labels"].tolist()) == [1, 2]
    np.testing.assert_allclose(out["boxes"].numpy(), np.stack([want, want]), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["scores"].numpy(), [4 / 9, 4 / 9], rtol=1e-4)


def test_roi_sampling_adds_gt(backbone):
    m = _model(backbone).train()
    gt = torch.tensor([[40.0, 40.0, 30.0, 12.0, 0.2], [70.0, 70.0, 20.0, 20.0, 0.0]])
    props = torch.tensor([[40.0, 40.0, 30.0, 12.0, 0.25], [10.0, 10.0, 8.0, 8.0, 0.0]] + [[50.0, 50.0, 9, 9, 0]] * 600)
    rois, labels, tgts = m.roi_heads.sample([props], [{"boxes": gt, "labels": torch.tensor([2, 1])}])
    n_pos = int((labels[0] < NUM_CLASSES).sum())
    assert len(rois[0]) == 512 and n_pos == 3  # both gts (as their own proposals) + the close proposal
    assert sorted(labels[0][:n_pos].tolist()) == [1, 2, 2] and (labels[0][n_pos:] == NUM_CLASSES).all()
    assert (tgts[0][n_pos:] == 0).all()


def test_closed_form_proposals_equal_cv2():
    """The RPN decodes with the coder's closed form (on the device); MMRotate uses cv2.minAreaRect: same boxes."""
    from rsbench.models.ops.rbox_coders import MidpointOffsetCoder

    g = torch.Generator().manual_seed(5)
    anchors = torch.tensor([[10.0, 20.0, 42.0, 36.0], [0.0, 0.0, 64.0, 128.0]]).repeat(50, 1)
    deltas = torch.randn(100, 6, generator=g) * 0.5
    a = MidpointOffsetCoder(rect="closed_form").decode(anchors, deltas)
    b = MidpointOffsetCoder(rect="cv2").decode(anchors, deltas)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-3, rtol=1e-4)
    dt = torch.remainder(a[:, 4] - b[:, 4] + math.pi / 2, math.pi) - math.pi / 2
    assert float(dt.abs().max()) < 1e-4


def test_degenerate_gt_trains(backbone):
    """A zero-height gt (collinear corners; DOTA's loaders keep them) gives finite losses."""
    m = _model(backbone).train()
    images, _ = _data()
    targets = [{"boxes": torch.tensor([[40.0, 44.0, 30.0, 0.0, 0.0], [60.0, 50.0, 30.0, 20.0, 0.3]]),
                "labels": torch.tensor([0, 1])},
               {"boxes": torch.tensor([[30.0, 30.0, 0.0, 0.0, 0.5]]), "labels": torch.tensor([2])}]
    losses = m(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
