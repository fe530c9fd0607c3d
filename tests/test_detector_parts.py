"""Known answers for the detector parts, each computed here by hand-written NumPy from MMDetection 3.1's rules.

The expected values never come from rsbench code: mmdet's formulas (anchor generator, MaxIoUAssigner,
RoIAlign ``aligned``, ``map_roi_levels``, L1 / CE losses with ``avg_factor``) are re-derived below.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops.poolers import LevelMapper

from rsbench.models.detection import build_faster_rcnn, build_retinanet
from rsbench.models.detection.anchors import retinanet_anchor_generator, rpn_anchor_generator
from rsbench.models.detection.fpn import P6P7OnInput
from rsbench.models.detection.matcher import MaxIoUMatcher
from rsbench.models.detection.retinanet import _nms
from rsbench.models.detection.roi_heads import AlignedMultiScaleRoIAlign, fastrcnn_l1_loss
from rsbench.models.detection.transform import PadOnlyTransform


class Toy(nn.Module):
    """4 maps at strides 4-32 with different widths, any input channels."""

    def __init__(self, in_chans: int = 3, chans=(8, 16, 24, 32)) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_chans, chans[0], 4, 4)
        self.stages = nn.ModuleList(nn.Conv2d(a, b, 2, 2) for a, b in itertools.pairwise(chans))
        self.out_channels, self.out_strides = list(chans), [4, 8, 16, 32]

    def forward(self, x):
        x = self.stem(x)
        out = [x]
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


# --- NumPy references ------------------------------------------------------------------------------
def np_mmdet_anchors(sizes, ratios, stride, grid_hw):
    """mmdet AnchorGenerator, center_offset 0: base ±0.5 w/h with h = s*sqrt(r), w = s/sqrt(r), + shifts."""
    base = []
    for r in ratios:  # scale_major: ratio outer, scale inner
        for s in sizes:
            w, h = s / math.sqrt(r), s * math.sqrt(r)
            base.append([-0.5 * w, -0.5 * h, 0.5 * w, 0.5 * h])
    base = np.array(base)
    ys, xs = np.meshgrid(np.arange(grid_hw[0]) * stride, np.arange(grid_hw[1]) * stride, indexing="ij")
    shifts = np.stack([xs.ravel(), ys.ravel(), xs.ravel(), ys.ravel()], 1)
    return (shifts[:, None, :] + base[None]).reshape(-1, 4)


def np_iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None] - inter)


def np_max_iou_assign(iou, pos_thr, neg_thr, min_pos_iou, match_low_quality=True):
    """mmdet MaxIoUAssigner.assign_wrt_overlaps (gt_max_assign_all=True) → torchvision codes (-1 neg, -2 ignore)."""
    n_gt, n = iou.shape
    assigned = -np.ones(n, dtype=np.int64)
    max_ov, argmax = iou.max(0), iou.argmax(0)
    gt_max = iou.max(1)
    assigned[(max_ov >= 0) & (max_ov < neg_thr)] = 0
    pos = max_ov >= pos_thr
    assigned[pos] = argmax[pos] + 1
    if match_low_quality:
        for i in range(n_gt):
            if gt_max[i] >= min_pos_iou:
                assigned[iou[i] == gt_max[i]] = i + 1
    return np.where(assigned > 0, assigned - 1, np.where(assigned == 0, -1, -2))


def np_encode(gt, anchor):
    """mmdet DeltaXYWHBBoxCoder.encode, means 0, stds 1."""
    pw, ph = anchor[2] - anchor[0], anchor[3] - anchor[1]
    px, py = anchor[0] + 0.5 * pw, anchor[1] + 0.5 * ph
    gw, gh = gt[2] - gt[0], gt[3] - gt[1]
    gx, gy = gt[0] + 0.5 * gw, gt[1] + 0.5 * gh
    return np.array([(gx - px) / pw, (gy - py) / ph, math.log(gw / pw), math.log(gh / ph)])


# --- anchors ---------------------------------------------------------------------------------------
def test_rpn_anchors_are_mmdet_unrounded_at_fixed_strides():
    gen = rpn_anchor_generator()
    grids = [(24, 24), (12, 12), (6, 6), (3, 3), (2, 2)]  # a 96 px image: the stride-64 level has 2 cells
    feats = [torch.zeros(1, 1, *g) for g in grids]
    got = gen(ImageList(torch.zeros(1, 3, 96, 96), [(96, 96)]), feats)[0].numpy()
    want = np.concatenate([np_mmdet_anchors([8 * s], [0.5, 1, 2], s, g)
                           for s, g in zip((4, 8, 16, 32, 64), grids)])
    np.testing.assert_allclose(got, want, atol=1e-4)
    # stride 4, ratio 0.5 (= h / w): 45.25 wide, 22.63 high, centred on 0 (torchvision rounds to 46 x 22)
    w, h = got[0, 2] - got[0, 0], got[0, 3] - got[0, 1]
    assert w == pytest.approx(32 * math.sqrt(2), abs=1e-4) and h == pytest.approx(16 * math.sqrt(2), abs=1e-4)
    # the stride-64 level's second cell is centred at 64 (torchvision would infer 96 // 2 = 48)
    last = got[-3:]
    np.testing.assert_allclose((last[:, 0] + last[:, 2]) / 2, 64.0)


def test_retinanet_anchor_sizes_are_float_octaves():
    gen = retinanet_anchor_generator()
    sizes = np.array(gen.sizes[0])
    np.testing.assert_allclose(sizes, [8 * 4 * 2 ** (k / 3) for k in range(3)], rtol=1e-12)
    np.testing.assert_allclose(sizes, [32.0, 40.3175, 50.7968], atol=1e-4)
    base = gen.cell_anchors[0].numpy()  # ratio 1.0 row: square anchors 40.32 wide
    np.testing.assert_allclose(base[4, 2] - base[4, 0], 40.317473596, atol=1e-4)
    assert gen.strides == [8, 16, 32, 64, 128]


# --- assigner --------------------------------------------------------------------------------------
def test_matcher_equals_numpy_mmdet_assigner_on_random_boxes():
    rng = np.random.default_rng(0)
    anchors = np_mmdet_anchors([32], [0.5, 1, 2], 8, (12, 12))
    xy = rng.uniform(0, 80, (7, 2))
    gts = np.concatenate([xy, xy + rng.uniform(10, 50, (7, 2))], 1)
    iou = np_iou(gts, anchors)
    for pos, neg, mpi in [(0.7, 0.3, 0.3), (0.5, 0.4, 0.0)]:
        want = np_max_iou_assign(iou, pos, neg, mpi)
        got = MaxIoUMatcher(pos, neg, min_pos_iou=mpi)(torch.from_numpy(iou)).numpy()
        np.testing.assert_array_equal(got, want)
    want = np_max_iou_assign(iou, 0.5, 0.5, 0.5, match_low_quality=False)
    np.testing.assert_array_equal(Matcher(0.5, 0.5, False)(torch.from_numpy(iou)).numpy(), want)


def test_low_quality_match_goes_to_that_gt_and_later_gt_wins_ties():
    iou = torch.tensor([[0.60, 0.65, 0.00, 0.00],   # gt0: best is anchor 1
                        [0.50, 0.10, 0.00, 0.00],   # gt1: best is anchor 0, which prefers gt0
                        [0.00, 0.00, 0.40, 0.40],   # gt2: tie between anchors 2 and 3
                        [0.00, 0.00, 0.00, 0.40]], dtype=torch.float64)  # gt3: also anchor 3's best
    want = np_max_iou_assign(iou.numpy(), 0.7, 0.3, 0.3)
    np.testing.assert_array_equal(want, [1, 0, 2, 3])
    np.testing.assert_array_equal(MaxIoUMatcher(0.7, 0.3, min_pos_iou=0.3)(iou.clone()).numpy(), want)
    assert Matcher(0.7, 0.3, True)(iou.clone())[0] == 0  # torchvision: the anchor's own best gt


def test_min_pos_iou_leaves_a_small_gt_without_rpn_positive():
    anchors = np.concatenate([np_mmdet_anchors([8 * s], [0.5, 1, 2], s, (256 // s, 256 // s))
                              for s in (4, 8, 16, 32, 64)])
    gt = np.array([[100.0, 100.0, 116.0, 116.0]])  # 16 px: at best 16² / 32² = 0.25 with a 32 px anchor
    iou = np_iou(gt, anchors)
    assert iou.max() == pytest.approx(0.25)
    ours = MaxIoUMatcher(0.7, 0.3, min_pos_iou=0.3)(torch.from_numpy(iou))
    np.testing.assert_array_equal(ours.numpy(), np_max_iou_assign(iou, 0.7, 0.3, 0.3))
    assert (ours >= 0).sum() == 0
    assert (Matcher(0.7, 0.3, True)(torch.from_numpy(iou)) >= 0).sum() > 0  # torchvision gives it one
    retina = MaxIoUMatcher(0.5, 0.4, min_pos_iou=0.0)(torch.from_numpy(iou))
    assert (retina == 0).sum() >= 1  # min_pos_iou 0: its best anchors are positive


def test_rpn_uses_the_mmdet_matcher():
    det = build_faster_rcnn(Toy(), 3, img_size=64, fpn_channels=16, representation_size=32)
    m = det.rpn.proposal_matcher
    assert isinstance(m, MaxIoUMatcher) and (m.high_threshold, m.low_threshold, m.min_pos_iou) == (0.7, 0.3, 0.3)
    r = build_retinanet(Toy(), 3, img_size=64, fpn_channels=16).proposal_matcher
    assert isinstance(r, MaxIoUMatcher) and (r.high_threshold, r.low_threshold, r.min_pos_iou) == (0.5, 0.4, 0.0)


# --- RoIAlign --------------------------------------------------------------------------------------
def _ramp_levels(img, a=1.0, b=10.0, level_const=1000.0):
    """f(y, x) = a x + b y + level_const * level: bilinear sampling of it is exact inside the map."""
    feats = {}
    for lvl, s in enumerate((4, 8, 16, 32)):
        n = img // s
        y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        feats[str(lvl)] = torch.from_numpy(a * x + b * y + level_const * lvl).float()[None, None]
    return feats


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_aligned_and_not_against_numpy(aligned):
    pool = AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], [4, 8, 16, 32], 7, 0, aligned=aligned)
    box = np.array([20.0, 24.0, 76.0, 88.0])  # sqrt(area) 59.9 -> level 0 (stride 4)
    got = pool(_ramp_levels(128), [torch.tensor(box[None], dtype=torch.float32)], [(128, 128)])[0, 0].numpy()
    off = 0.5 if aligned else 0.0
    s = 0.25
    x0, y0 = box[0] * s - off, box[1] * s - off
    bw, bh = (box[2] - box[0]) * s / 7, (box[3] - box[1]) * s / 7
    xs = x0 + (np.arange(7) + 0.5) * bw  # mean of the symmetric samples of each bin
    ys = y0 + (np.arange(7) + 0.5) * bh
    want = 1.0 * xs[None, :] + 10.0 * ys[:, None]
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_roi_levels_follow_mmdet_finest_scale_56():
    sides = np.array([20.0, 55.0, 111.5, 112.5, 230.0, 460.0, 600.0])
    want = np.clip(np.floor(np.log2(sides / 56 + 1e-6)), 0, 3).astype(int)
    np.testing.assert_array_equal(want, [0, 0, 0, 1, 2, 3, 3])
    boxes = torch.tensor([[8.0, 8.0, 8 + s, 8 + s] for s in sides])
    tv = LevelMapper(2, 5, canonical_scale=224, canonical_level=4)([boxes])
    np.testing.assert_array_equal(tv.numpy(), want)  # torchvision's k_min 2 / 224 mapping is the same
    pool = AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], [4, 8, 16, 32], 7, 0)
    feats = {str(i): torch.full((1, 1, 640 // s, 640 // s), float(i)) for i, s in enumerate((4, 8, 16, 32))}
    got = pool(feats, [boxes], [(640, 640)])[:, 0, 3, 3]
    np.testing.assert_array_equal(got.numpy(), want)


# --- FPN extra levels ------------------------------------------------------------------------------
def test_p6_on_c5_and_p7_without_relu():
    block = P6P7OnInput(in_channels=3, out_channels=2)
    with torch.no_grad():
        block.p6.weight.zero_()
        block.p6.bias.fill_(-1.0)  # P6 = -1 everywhere
        block.p6.weight[:, :, 1, 1] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
        block.p7.weight.fill_(1.0)
        block.p7.bias.zero_()
    c5 = torch.zeros(1, 3, 8, 8)
    p5 = torch.full((1, 2, 8, 8), 100.0)  # must not be used
    with torch.no_grad():
        results, names = block([p5], [c5], ["0"])
    assert names == ["0", "p6", "p7"] and results[1].shape == (1, 2, 4, 4) and results[2].shape == (1, 2, 2, 2)
    np.testing.assert_allclose(results[1].numpy(), -1.0)  # from C5 (zeros), not P5
    # P7 at cell (1, 1): a full 3x3 window of -1 over 2 channels, weights 1: -18 (a ReLU would give 0)
    assert results[2][0, 0, 1, 1].item() == pytest.approx(-18.0)


# --- losses ----------------------------------------------------------------------------------------
def _bce(x, y):
    return np.log1p(np.exp(-x)) * y + np.log1p(np.exp(x)) * (1 - y)


def t(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)


def test_rpn_l1_loss_and_avg_factor_against_numpy():
    rng = np.random.default_rng(1)
    lab_a = np.array([1, 1, 1, 0, 0, 0, 0, 0, -1, -1], dtype=np.float32)  # 3 pos, 5 neg, 2 ignored
    lab_b = np.array([0, 0, 0, 0, -1], dtype=np.float32)  # no positive: mmdet counts max(#pos, 1) = 1
    n = len(lab_a) + len(lab_b)
    logits, deltas, targets = rng.normal(size=n), rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    det = build_faster_rcnn(Toy(), 3, img_size=64, fpn_channels=16, representation_size=32)
    assert isinstance(det.rpn, RegionProposalNetwork)
    loss_cls, loss_box = det.rpn.compute_loss(t(logits[:, None]), t(deltas), [t(lab_a), t(lab_b)],
                                              [t(targets[:10]), t(targets[10:])])
    labels = np.concatenate([lab_a, lab_b])
    avg = (3 + 5) + (1 + 4)
    sampled = labels >= 0
    want_cls = _bce(logits[sampled], labels[sampled]).sum() / avg
    want_box = np.abs(deltas[labels == 1] - targets[labels == 1]).sum() / avg
    assert loss_cls.item() == pytest.approx(want_cls, rel=1e-5)
    assert loss_box.item() == pytest.approx(want_box, rel=1e-5)


def test_roi_l1_loss_against_numpy():
    rng = np.random.default_rng(2)
    n, c = 6, 3  # 3 classes + background (torchvision index 0)
    logits, reg, targets = rng.normal(size=(n, c + 1)), rng.normal(size=(n, 4 * (c + 1))), rng.normal(size=(n, 4))
    labels = np.array([0, 2, 0, 3, 1, 0])
    loss_cls, loss_box = fastrcnn_l1_loss(t(logits), t(reg), [torch.tensor(labels)], [t(targets)])
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want_cls = -np.log(p[np.arange(n), labels]).mean()
    pos = labels > 0
    want_box = np.abs(reg.reshape(n, -1, 4)[np.arange(n), labels][pos] - targets[pos]).sum() / n  # / all sampled
    assert loss_cls.item() == pytest.approx(want_cls, rel=1e-5)
    assert loss_box.item() == pytest.approx(want_box, rel=1e-5)


def test_retinanet_l1_box_loss_against_numpy():
    det = build_retinanet(Toy(), 3, img_size=64, fpn_channels=16)
    anchors = np.array([[0.0, 0, 32, 32], [8, 8, 40, 40], [50, 50, 60, 70]])
    gt = np.array([[4.0, 2, 30, 40]])
    reg = np.random.default_rng(3).normal(size=(1, 3, 4))
    matched = torch.tensor([0, 0, -2])  # two positives, one ignored
    loss = det.head.regression_head.compute_loss(
        [{"boxes": torch.tensor(gt, dtype=torch.float32)}], {"bbox_regression": torch.tensor(reg).float()},
        [torch.tensor(anchors, dtype=torch.float32)], [matched])
    want = sum(np.abs(reg[0, i] - np_encode(gt[0], anchors[i])).sum() for i in (0, 1)) / 2  # / #positives
    assert loss.item() == pytest.approx(want, rel=1e-5)


# --- transform, test-time filters ------------------------------------------------------------------
def test_pad_only_transform_pads_to_32_with_zeros_and_never_resizes():
    a, b = torch.randn(4, 50, 70), torch.randn(4, 64, 40)
    tr = PadOnlyTransform(32)
    images, targets = tr([a, b], [{"boxes": torch.tensor([[1.0, 2, 30, 40]])}, {"boxes": torch.zeros(0, 4)}])
    assert images.tensors.shape == (2, 4, 64, 96)
    assert images.image_sizes == [(50, 70), (64, 40)]
    assert torch.equal(images.tensors[0, :, :50, :70], a) and torch.equal(images.tensors[1, :, :, :40], b)
    assert images.tensors[0, :, 50:].abs().sum() == 0 and images.tensors[0, :, :, 70:].abs().sum() == 0
    assert images.tensors[1, :, :, 40:].abs().sum() == 0
    assert torch.equal(targets[0]["boxes"], torch.tensor([[1.0, 2, 30, 40]]))
    dets = [{"boxes": torch.tensor([[1.0, 1, 5, 5]])}]
    assert tr.postprocess(dets, [(50, 70)], [(50, 70)])[0]["boxes"].tolist() == [[1.0, 1, 5, 5]]


def test_retinanet_test_filter_drops_zero_area_then_caps():
    boxes = torch.tensor([[0.0, 0, 0, 10], [0, 0, 10, 10], [20, 20, 20.5, 21], [40, 40, 40, 40]])
    out = _nms(boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 1, 1]), 0.5, 100)
    assert out["boxes"].tolist() == [[0.0, 0, 10, 10], [20, 20, 20.5, 21]]
    assert len(_nms(boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.zeros(4, dtype=torch.long), 0.5, 1)["boxes"]) == 1


def test_faster_rcnn_test_output_is_0_based_and_keeps_tiny_boxes():
    det = build_faster_rcnn(Toy(), 2, img_size=64, fpn_channels=16, representation_size=32).eval()
    logits = torch.tensor([[0.0, -9, 9], [0.0, 9, -9]])  # columns: background, class 0, class 1
    reg = torch.zeros(2, 12)
    props = [torch.tensor([[10.0, 10, 10.005, 10.005], [30, 30, 50, 50]])]  # the first is 0.005 px wide
    out = det.roi_heads.detect(logits, reg, props, [(64, 64)])[0]
    assert sorted(out["labels"].tolist()) == [0, 1]
    assert out["labels"][out["scores"].argmax()].item() in (0, 1)
    assert len(out["boxes"]) == 2  # torchvision's remove_small_boxes(1e-2) would drop the tiny one
    assert (out["scores"] > 0.05).all()


# --- initialisation --------------------------------------------------------------------------------
def test_init_statistics_match_mmdet():
    torch.manual_seed(0)
    det = build_faster_rcnn(Toy(), 20, img_size=64)
    pred, head = det.roi_heads.box_predictor, det.roi_heads.box_head
    assert pred.bbox_pred.weight.std().item() == pytest.approx(0.001, rel=0.03)
    assert pred.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.05)
    for lin in (head.fc6, head.fc7, pred.bbox_pred, pred.cls_score):
        assert lin.bias.abs().sum() == 0
    for lin in (head.fc6, head.fc7):  # Xavier uniform: bound sqrt(6 / (in + out))
        fan_in, fan_out = lin.weight.shape[1], lin.weight.shape[0]
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert lin.weight.abs().max().item() <= bound
        assert lin.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    convs = [m for m in det.backbone.fpn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8
    for conv in convs:
        rf = conv.weight[0, 0].numel()
        bound = math.sqrt(6 / (rf * (conv.in_channels + conv.out_channels)))
        assert conv.weight.abs().max().item() <= bound and conv.bias.abs().sum() == 0
        assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    rpn_conv = det.rpn.head.conv[0][0]
    assert rpn_conv.weight.std().item() == pytest.approx(0.01, rel=0.05)
    retina = build_retinanet(Toy(), 20, img_size=64)
    cls = retina.head.classification_head.cls_logits
    assert cls.bias.detach().numpy() == pytest.approx(-math.log(99))
    assert cls.weight.std().item() == pytest.approx(0.01, rel=0.05)
    extra = retina.backbone.fpn.extra_blocks
    bound = math.sqrt(6 / (9 * (32 + 256)))
    assert extra.p6.in_channels == 32 and extra.p6.weight.abs().max().item() <= bound
