"""Change-detection model, augmentation and metrics: siamese symmetry, UNet shapes, date exchange,
mmseg's crop rule, and metrics against hand-computed counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsbench.models import build_backbone
from rsbench.models.heads.unet_cd import UNetHead, siamese_features
from rsbench.tasks.change_detection import ChangeDetectionTask, cd_loss, cd_metric_collection, cd_results





TINY_VIT = {"embed_dim": 32, "depth": 4, "num_heads": 2, "out_indices": [0, 1, 2, 3], "interval": 2, "drop_path_rate": 0.0}


def _task(name="resnet18", img_size=64, dec=(32, 16, 16, 8), **kw):
    return ChangeDetectionTask(
        backbone={"name": name, "pretrained": None, "kwargs": kw, "features": "maps"},
        optim={"lr": 1e-4, "weight_decay": 0.05, "layer_decay": None}, sched={}, img_size=img_size,
        num_classes=2, decoder_channels=dec)


def test_siamese_features_are_symmetric_and_shared():
    torch.manual_seed(0)
    bb = build_backbone("resnet18", img_size=32).eval()
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    a, b = siamese_features(bb, x1, x2), siamese_features(bb, x2, x1)
    assert len(a) == 4 and all(torch.equal(p, q) for p, q in zip(a, b))
    assert all(torch.count_nonzero(f) == 0 for f in siamese_features(bb, x1, x1.clone()))
    task = _task().eval()
    with torch.no_grad():
        assert torch.equal(task(x1, x2), task(x2, x1))
    # one encoder: no second copy of the backbone's weights
    assert sum(1 for n, _ in task.named_parameters() if n.startswith("backbone.")) == len(list(task.backbone.parameters()))


def test_unet_head_official_wiring():
    head = UNetHead([64, 128, 256, 512], (512, 256, 128, 64))
    # reversed: head = deepest (512); skips 256, 128, 64; the 4th block has none
    assert [b.conv1[0].in_channels for b in head.blocks] == [512 + 256, 512 + 128, 256 + 64, 128]
    assert [b.conv1[0].out_channels for b in head.blocks] == [512, 256, 128, 64]
    assert isinstance(head.dropout, torch.nn.Dropout2d) and head.dropout.p == 0.1
    assert head.conv_seg.out_channels == 2 and torch.count_nonzero(head.conv_seg.bias) == 0
    assert head.conv_seg.weight.std() < 0.02
    # pyramid 4..32 → logits at the input size; ViT's four stride-16 maps → 2× the input size
    pyr = [torch.randn(1, c, 64 // s, 64 // s) for c, s in zip([64, 128, 256, 512], [4, 8, 16, 32])]
    assert head(pyr).shape == (1, 2, 64, 64)
    vit = UNetHead([32] * 4, (32, 16, 16, 8))
    assert vit([torch.randn(1, 32, 4, 4)] * 4).shape == (1, 2, 128, 128)


@pytest.mark.parametrize("name,kw", [("resnet18", {}), ("vitb_rvsa", TINY_VIT)])
def test_task_forward_any_backbone(name, kw):
    task = _task(name, img_size=112, **kw)  # the ViT needs ≥ 7×7 tokens
    x = torch.randn(2, 3, 112, 112)
    assert task(x, x).shape == (2, 2, 112, 112)
    assert task(x, x, size=(96, 96)).shape == (2, 2, 96, 96)  # OSCD: logits to the label size
    mask = torch.randint(0, 2, (2, 96, 96))
    mask[0, :10] = 255
    loss = task.training_step({"image1": x, "image2": x.flip(-1), "mask": mask}, 0)
    loss.backward()
    assert task.backbone.out_strides == ([4, 8, 16, 32] if name == "resnet18" else [16] * 4)
    assert all(p.grad is not None for p in task.head.parameters())


def test_loss_is_mmseg_mean_over_all_pixels():
    logits = torch.randn(2, 2, 8, 8)
    mask = torch.randint(0, 2, (2, 8, 8))
    mask[:, :2] = 255
    per_pixel = F.cross_entropy(logits, mask, ignore_index=255, reduction="none")
    assert torch.allclose(cd_loss(logits, mask), per_pixel.sum() / mask.numel())


def _cd_results(pairs):
    m = cd_metric_collection()
    for pred, target in pairs:
        m.update(torch.tensor(pred), torch.tensor(target))
    return cd_results(m.compute(), ["unchanged", "changed"])


def test_metrics_against_hand_counts():
    """An asymmetric confusion matrix (tp ≠ tn, fp ≠ fn) with ignored pixels, over two updates."""
    target1 = [[0, 0, 1, 1, 255], [0, 1, 0, 0, 1]]
    pred1 = [[0, 1, 1, 0, 1], [0, 1, 0, 0, 0]]
    # by hand: (0,0) tn, (0,1) fp, (0,2) tp, (0,3) fn, (0,4) ignored; (1,0) tn, (1,1) tp, (1,2) tn,
    # (1,3) tn, (1,4) fn  →  tn 4, fp 1, fn 2, tp 2
    target2 = [[0, 0, 0, 1, 1, 1, 255, 255, 0]]
    pred2 = [[0, 0, 1, 1, 1, 0, 1, 0, 0]]
    # tn tn fp tp tp fn ign ign tn  →  tn 3, fp 1, fn 1, tp 2
    # total: tn 7, fp 2, fn 3, tp 4; 16 labelled pixels, 3 ignored
    r = _cd_results([(pred1, target1), (pred2, target2)])
    assert r["confusion_matrix"] == [[7, 2], [3, 4]]  # rows = label (unchanged, changed), columns = prediction
    assert r["num_test_pixels"] == 16
    # class "changed" (the paper's F1): P = 4/6, R = 4/7, F1 = 8/13, IoU = 4/9
    assert r["Precision"] == pytest.approx(100 * 4 / 6)
    assert r["Recall"] == pytest.approx(100 * 4 / 7)
    assert r["F1"] == pytest.approx(100 * 8 / 13)
    assert r["IoU"] == pytest.approx(100 * 4 / 9)
    assert r["OA"] == pytest.approx(100 * 11 / 16)
    # class "unchanged": P = 7/10, R = 7/9, F1 = 14/19, IoU = 7/12
    pc = r["per_class"]
    assert pc["Precision"] == pytest.approx({"unchanged": 100 * 7 / 10, "changed": 100 * 4 / 6})
    assert pc["Recall"] == pytest.approx({"unchanged": 100 * 7 / 9, "changed": 100 * 4 / 7})
    assert pc["F1"] == pytest.approx({"unchanged": 100 * 14 / 19, "changed": 100 * 8 / 13})
    assert pc["IoU"] == pytest.approx({"unchanged": 100 * 7 / 12, "changed": 100 * 4 / 9})
    assert r["mPrecision"] == pytest.approx(100 * (7 / 10 + 4 / 6) / 2)
    assert r["mRecall"] == pytest.approx(100 * (7 / 9 + 4 / 7) / 2)
    assert r["mF1"] == pytest.approx(100 * (14 / 19 + 8 / 13) / 2)
    assert r["mIoU"] == pytest.approx(100 * (7 / 12 + 4 / 9) / 2)


def test_metrics_when_no_change_is_found():
    """tp = 0: the numbers that do not depend on the 0/0 convention, by hand."""
    target = [[0, 0, 0, 1, 1, 255]]
    pred = [[0, 1, 0, 0, 0, 1]]  # tn 2, fp 1, fn 2, tp 0
    r = _cd_results([(pred, target)])
    assert r["confusion_matrix"] == [[2, 1], [2, 0]] and r["num_test_pixels"] == 5
    assert r["Recall"] == 0.0 and r["IoU"] == 0.0 and r["Precision"] == 0.0
    assert r["OA"] == pytest.approx(100 * 2 / 5)
    assert r["per_class"]["F1"]["unchanged"] == pytest.approx(100 * 4 / 7)
    assert r["per_class"]["IoU"]["unchanged"] == pytest.approx(100 * 2 / 5)
