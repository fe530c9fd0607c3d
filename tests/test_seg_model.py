"""Segmentation model side: slide inference, UperNet, the task module, metrics, recipe config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from rsbench.metrics.segmentation import seg_metrics
from rsbench.models.slide_inference import dense_inference, slide_inference, whole_inference, window_grid




# -- sliding-window inference -----------------------------------------------------------------

@pytest.mark.parametrize("size", [(37, 50), (64, 64), (33, 97), (16, 16), (10, 40), (5, 7)])
@pytest.mark.parametrize("pad_small", [True, False])
def test_slide_equals_whole_for_a_pixelwise_model(size, pad_small):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1).eval()
    img = torch.randn(2, 3, *size)
    whole = whole_inference(conv, img)
    for wb in (1, 3):
        slide = slide_inference(conv, img, num_classes=4, crop_size=16, stride=12, window_batch=wb, pad_small=pad_small)
        assert slide.shape == (2, 4, *size)
        assert torch.allclose(slide, whole, atol=1e-5)


@pytest.mark.parametrize("size,crop,stride", [((406, 439), 384, 256), ((1024, 1024), 512, 384), ((101, 77), 32, 21),
                                              ((20, 300), 64, 48), ((65, 65), 64, 64)])
def test_windows_cover_every_pixel_and_stay_inside(size, crop, stride):
    cover = torch.zeros(size)
    wins = window_grid(size, crop, stride)
    for y1, y2, x1, x2 in wins:
        assert 0 <= y1 < y2 <= size[0] and 0 <= x1 < x2 <= size[1]
        assert y2 - y1 == min(crop, size[0]) and x2 - x1 == min(crop, size[1])
        cover[y1:y2, x1:x2] += 1
    assert (cover > 0).all()
    assert max(w[1] for w in wins) == size[0] and max(w[3] for w in wins) == size[1]
    if size == (1024, 1024):
        assert len(wins) == 9  # LoveDA: 3×3 windows of 512 at stride 384


def test_slide_averages_overlaps_and_sees_fixed_size_windows():
    seen = []

    def model(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.ones(x.shape[0], 2, *x.shape[-2:])

    out = slide_inference(model, torch.zeros(1, 3, 50, 70), num_classes=2, crop_size=32, stride=20)
    assert torch.allclose(out, torch.ones_like(out)) and set(seen) == {(32, 32)}
    seen.clear()
    slide_inference(model, torch.zeros(1, 3, 20, 70), num_classes=2, crop_size=32, stride=20)  # smaller than crop
    assert set(seen) == {(32, 32)}
    seen.clear()
    slide_inference(model, torch.zeros(1, 3, 20, 70), num_classes=2, crop_size=32, stride=20, pad_small=False)
    assert set(seen) == {(20, 32)}  # mmseg's own behaviour
    counts = torch.zeros(50, 70)
    for y1, y2, x1, x2 in window_grid((50, 70), 32, 20):
        counts[y1:y2, x1:x2] += 1

    def position(x):  # logits = window index → the average over overlaps
        position.k += 1
        return torch.full((x.shape[0], 1, *x.shape[-2:]), float(position.k))

    position.k = 0
    out = slide_inference(position, torch.zeros(1, 3, 50, 70), num_classes=1, crop_size=32, stride=20)
    expect = torch.zeros(50, 70)
    for k, (y1, y2, x1, x2) in enumerate(window_grid((50, 70), 32, 20), start=1):
        expect[y1:y2, x1:x2] += k
    assert torch.allclose(out[0, 0], expect / counts)


def test_whole_and_resize_modes():
    conv = nn.Conv2d(3, 2, 1).eval()
    img = torch.randn(1, 3, 30, 45)
    assert dense_inference(conv, img, num_classes=2, mode="whole", size_divisor=32).shape == (1, 2, 30, 45)
    assert dense_inference(conv, img, num_classes=2, mode="resize", crop_size=16).shape == (1, 2, 30, 45)
    with pytest.raises(ValueError, match="slide, whole or resize"):
        dense_inference(conv, img, num_classes=2, mode="tiles")


def _cv2_linear(x: torch.Tensor, size) -> torch.Tensor:
    """OpenCV ``INTER_LINEAR`` per channel (mmcv ``imresize`` of the image; on float data the same as
    mmseg's ``resize`` of the logits, bilinear with ``align_corners=False``)."""
    import cv2

    return torch.from_numpy(np.stack([cv2.resize(c, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                                      for c in x[0].numpy()]))[None]


def test_whole_and_resize_modes_give_the_reference_values():
    """Values, not shapes. whole: padded with 0 at the bottom/right only up to the divisor, the logits
    of the original pixels kept; resize: image to the crop size and logits back, bilinear (OpenCV).
    Slips caught: padding at the top/left, the logits cut from the wrong corner, align_corners=True
    or nearest in either resize, resize to the wrong size."""
    torch.manual_seed(0)
    # sees its neighbours and reflects at its own border, so the zeros padded in change the border logits
    conv = nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect").eval()
    img = torch.randn(1, 3, 30, 45)
    seen = []

    def model(x):
        seen.append(tuple(x.shape[-2:]))
        return conv(x)

    with torch.no_grad():
        padded = torch.zeros(1, 3, 32, 64)
        padded[:, :, :30, :45] = img
        expect = conv(padded)[:, :, :30, :45]
        out = dense_inference(model, img, num_classes=2, mode="whole", size_divisor=32)
        assert seen == [(32, 64)] and torch.allclose(out, expect, atol=1e-6)
        assert not torch.allclose(expect, conv(img), atol=1e-3)  # the padding matters on the border
        seen.clear()
        assert torch.allclose(dense_inference(model, img, num_classes=2, mode="whole"), conv(img), atol=1e-6)
        seen.clear()
        dense_inference(model, padded, num_classes=2, mode="whole", size_divisor=32)
        assert seen == [(32, 64)]  # already a multiple of the divisor: not padded further
        seen.clear()
        out = dense_inference(model, img, num_classes=2, mode="resize", crop_size=16)
        assert seen == [(16, 16)]
        expect = _cv2_linear(conv(_cv2_linear(img, (16, 16))), (30, 45))
        assert torch.allclose(out, expect, atol=1e-4)


# -- UperNet and the task ---------------------------------------------------------------------

def test_upernet_on_a_strided_pyramid_and_on_single_stride_maps():
    from rsbench.models.heads.upernet import UPerHead

    head = UPerHead([8, 16, 32, 64], 5, channels=16).eval()
    feats = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])]
    assert head(feats).shape == (2, 5, 16, 16)
    assert head.conv_seg.weight.std() < 0.05 and isinstance(head.dropout, nn.Dropout2d)
    assert len(head.psp_modules) == 4 and [m[0].output_size for m in head.psp_modules] == [1, 2, 3, 6]
    flat = UPerHead([8] * 4, 3, channels=8).eval()
    assert flat([torch.randn(1, 8, 4, 4)] * 4).shape == (1, 3, 4, 4)


def _task(backbone="resnet18", img_size=32, **kw):
    from rsbench.tasks.segmentation import SegmentationTask

    return SegmentationTask(
        backbone={"name": backbone, "pretrained": None, "features": "pyramid", "kwargs": {}},
        num_classes=3, class_names=["a", "b", "c"], optim={"lr": 1e-3, "weight_decay": 0.05, "layer_decay": None},
        sched={"name": "cosine", "warmup_steps": 0}, img_size=img_size, in_chans=3,
        head={"channels": 16}, inference={"mode": "slide", "stride": 24}, **kw,
    )


def test_task_forward_loss_and_inference():
    torch.manual_seed(0)
    task = _task()
    x = torch.randn(2, 3, 32, 32)
    logits = task(x)
    assert logits.shape == (2, 3, 32, 32)
    mask = torch.randint(0, 3, (2, 32, 32))
    mask[:, :8] = 255
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, mask, ignore_index=255, reduction="none")
    assert torch.allclose(task.loss(logits, mask), ce.sum() / mask.numel())  # mmseg: mean over all pixels
    task.avg_non_ignore = True
    assert torch.allclose(task.loss(logits, mask), ce.sum() / (mask != 255).sum())
    task.eval()
    assert task.infer(torch.randn(1, 3, 45, 70)).shape == (1, 3, 45, 70)
    assert task.inference_cfg["crop_size"] == 32


def test_vit_rvsa_seg_pyramid_plugs_into_upernet():
    task = _task("vitb_rvsa", img_size=112).eval()  # the ViT needs ≥ 7×7 tokens
    assert task.backbone.out_strides == [4, 8, 16, 32]
    with torch.no_grad():
        assert task.infer(torch.randn(1, 3, 120, 130)).shape == (1, 3, 120, 130)  # windows of exactly 112²


# -- metrics ----------------------------------------------------------------------------------

def test_metrics_against_a_hand_computed_confusion_matrix():
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

    target = torch.tensor([[0, 0, 1, 1, 2, 2, 255, 255],
                           [0, 1, 1, 2, 2, 2, 0, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 2, 0, 2, 1],
                         [0, 1, 2, 2, 2, 2, 1, 0]])
    # by hand (rows = truth, columns = prediction; 255 ignored):
    #   truth 0 at (0,0)(0,1)(1,0)(1,6) → pred 0,1,0,1     → [2, 2, 0]
    #   truth 1 at (0,2)(0,3)(1,1)(1,2) → pred 1,1,1,2     → [0, 3, 1]
    #   truth 2 at (0,4)(0,5)(1,3)(1,4)(1,5) → 2,0,2,2,2   → [1, 0, 4]
    cm_hand = torch.tensor([[2, 2, 0], [0, 3, 1], [1, 0, 4]])
    cm = MulticlassConfusionMatrix(3, ignore_index=255)(pred, target)
    assert torch.equal(cm, cm_hand)
    m = seg_metrics(cm, ["bg", "x", "y"])
    iou = [2 / (4 + 3 - 2), 3 / (4 + 5 - 3), 4 / (5 + 5 - 4)]
    assert m["per_class"]["IoU"] == pytest.approx({"bg": 100 * iou[0], "x": 100 * iou[1], "y": 100 * iou[2]})
    assert m["mIoU"] == pytest.approx(100 * sum(iou) / 3)
    assert m["OA"] == pytest.approx(100 * 9 / 13)
    p, r = 2 / 3, 2 / 4
    assert m["per_class"]["F1"]["bg"] == pytest.approx(100 * 2 * p * r / (p + r))
    assert m["mAcc"] == pytest.approx(100 * (2 / 4 + 3 / 4 + 4 / 5) / 3)
    assert m["num_test_pixels"] == 13 and m["confusion_matrix"] == cm_hand.tolist()
    jac = MulticlassJaccardIndex(3, ignore_index=255, average="macro")(pred, target)
    assert m["mIoU"] == pytest.approx(100 * float(jac))


def test_metrics_leave_absent_classes_out_of_the_mean():
    cm = torch.tensor([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    m = seg_metrics(cm)
    assert m["per_class"]["IoU"]["2"] is None and m["per_class"]["F1"]["2"] is None
    assert m["mIoU"] == pytest.approx(100 * (5 / 8 + 2 / 5) / 2)


def test_f1_of_a_class_with_no_true_positive_is_left_out_as_mmseg_does():
    """mmseg IoUMetric: f_score(p, r) = 2pr / (p + r) is 0/0 = NaN when TP = 0, and mFscore is a nanmean."""
    # class 1 predicted once, never right; absent from the ground truth (recall 0/0)
    absent = seg_metrics(torch.tensor([[3, 1], [0, 0]]))
    assert absent["per_class"]["IoU"]["1"] == 0.0 and absent["per_class"]["precision"]["1"] == 0.0
    assert absent["per_class"]["recall"]["1"] is None and absent["per_class"]["F1"]["1"] is None
    assert absent["mIoU"] == pytest.approx(100 * (3 / 4 + 0) / 2)
    assert absent["mF1"] == pytest.approx(100 * 2 * 1 * (3 / 4) / (1 + 3 / 4))  # class 0 only: p 3/3, r 3/4
    # class 1 in the ground truth twice, predicted once, never right: p = r = 0
    missed = seg_metrics(torch.tensor([[3, 1], [2, 0]]))
    assert missed["per_class"]["recall"]["1"] == 0.0 and missed["per_class"]["precision"]["1"] == 0.0
    assert missed["per_class"]["F1"]["1"] is None and missed["mAcc"] == pytest.approx(100 * (3 / 4 + 0) / 2)
    assert missed["mF1"] == pytest.approx(100 * 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))  # class 0: p 3/5, r 3/4
    assert missed["OA"] == pytest.approx(100 * 3 / 6) and missed["mIoU"] == pytest.approx(100 * (3 / 6 + 0) / 2)


# -- plots and palette ------------------------------------------------------------------------

def test_colorize_uses_the_palette_and_a_spare_colour_for_ignore():
    from rsbench.data.datasets.loveda import PALETTE
    from rsbench.plotting import colorize

    lab = np.array([[0, 1, 6, 255]])
    rgb = colorize(lab, PALETTE)
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [255, 0, 0]
    assert rgb[0, 2].tolist() == [255, 195, 128] and rgb[0, 3].tolist() == [0, 0, 0]
    sn = colorize(np.array([[0, 1, 255]]), [(0, 0, 0), (255, 255, 255)])
    assert sn[0, 2].tolist() not in ([0, 0, 0], [255, 255, 255])


# -- recipe configuration ---------------------------------------------------------------------

def _compose(overrides):
    from conftest import compose_config

    return compose_config(overrides)


@pytest.mark.parametrize("dataset,crop,stride", [("loveda", 512, 384), ("spacenet1", 384, 256)])
def test_recipe_matches_the_paper(dataset, crop, stride):
    c = _compose([f"dataset={dataset}", "backbone=vitb_rvsa", "logger=none"])
    assert c["task"]["name"] == "seg" and c["task"]["metric"] == "mIoU" and c["task"]["features"] == "pyramid"
    assert c["trainer"]["max_steps"] == 80000 and c["trainer"]["max_epochs"] == -1
    assert c["trainer"]["val_check_interval"] == 8000 and c["trainer"]["check_val_every_n_epoch"] is None
    ckpt = c["callbacks"]["checkpoint"]
    assert ckpt["every_n_train_steps"] == 8000 and ckpt["every_n_epochs"] is None
    assert c["sched"]["warmup_steps"] == 1500 and c["sched"]["cosine_by_epoch"] is False
    assert c["optim"]["lr"] == 6e-5 and c["optim"]["layer_decay"] == 0.9 and c["optim"]["weight_decay"] == 0.05
    assert c["data"]["batch_size"] == 8 and c["data"]["eval_batch_size"] == 1 and c["data"]["img_size"] == crop
    inf = c["task"]["module"]["inference"]
    assert inf["mode"] == "slide" and inf["crop_size"] == crop and inf["stride"] == stride
    head = c["task"]["module"]["head"]
    assert head == {"channels": 512, "pool_scales": [1, 2, 3, 6], "dropout": 0.1}
    assert {k: v for k, v in c["dataset"]["splits"].items() if v} == {"train": "train", "val": "val", "test": "val"}
    assert c["dataset"]["num_classes"] == (7 if dataset == "loveda" else 2)
    assert c["task"]["transforms"]["cat_max_ratio"] == 0.75 and c["task"]["transforms"]["ratio_range"] == [0.5, 2.0]


def test_iteration_schedule_equals_mmengine_at_every_iteration():
    """The seg recipe's schedule against MMEngine's chained LinearLR(end=1500) + CosineAnnealingLR
    (begin=1500, T_max=78500), every one of the 80k iterations (tests/test_fidelity_schedule.py)."""
    from test_fidelity_schedule import mmengine_lrs

    from rsbench.tasks.schedule import Schedule

    c = _compose(["dataset=loveda", "backbone=vitb_rvsa", "logger=none"])
    s = Schedule.from_config(c["sched"], total_steps=c["trainer"]["max_steps"], steps_per_epoch=315)
    ref = [lr for (lr,) in mmengine_lrs([1.0], iters_per_epoch=80000, max_iters=80000, warmup_iters=1500)]
    got = [s(i) for i in range(80000)]
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-15)
    assert s(1499) == pytest.approx(1.0) and s(749) == pytest.approx(1e-6 + (1 - 1e-6) * 749 / 1499)


def test_submission_pngs_have_the_server_format(samples, tmp_path):
    """The predict split through SubmissionWriter: one uint8 PNG per LoveDA test image, same name and size, 0..6."""
    import lightning as L

    from rsbench.callbacks import SubmissionWriter
    from rsbench.data import build_dataset
    from rsbench.data.datamodule import RSDataModule
    from rsbench.data.seg_transforms import build_seg_transforms
    from rsbench.tasks.segmentation import SegmentationTask

    root = samples("loveda", size=40)
    dm = RSDataModule(dataset="loveda", root=root, splits={"predict": "test"}, transforms=build_seg_transforms,
                      batch_size=2, eval_batch_size=1, num_workers=0, img_size=32)
    task = SegmentationTask(
        backbone={"name": "resnet18", "pretrained": None, "features": "pyramid", "kwargs": {}}, num_classes=7,
        optim={"lr": 1e-3, "weight_decay": 0.0, "layer_decay": None}, sched={}, img_size=32,
        head={"channels": 8}, inference={"stride": 24},
    )
    writer = SubmissionWriter(tmp_path / "submission")
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False)
    trainer.predict(task, datamodule=dm, return_predictions=False)
    files = sorted((tmp_path / "submission").iterdir())
    expected = sorted(p.name for p in build_dataset("loveda", root, "test").image_paths)
    assert [f.name for f in files] == expected and writer.summary(task)["num_files"] == len(expected) == 4
    for f in files:
        im = Image.open(f)
        a = np.asarray(im)
        assert im.format == "PNG" and im.mode == "L" and a.dtype == np.uint8 and a.shape == (40, 40)
        assert a.max() <= 6
