"""Test-split metrics through the real task and Lightning's test loop, against hand counts and a
NumPy computation of mmseg's ``IoUMetric`` (not rsbench's own functions).

The model is replaced by a fixed prediction, so the numbers depend only on the labels, the
loaders and the metric code.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from rsbench.data.datamodule import RSDataModule


def _trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)


# -- classification: OA over images, on an unbalanced split ----------------------------------------

class Scenes(Dataset):
    """Each image is filled with the class the fake model will predict for it."""

    def __init__(self, labels, preds) -> None:
        self.labels, self.preds = labels, preds

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": torch.full((3, 8, 8), float(self.preds[i])), "label": torch.tensor(self.labels[i])}


class SceneDM(RSDataModule):
    def __init__(self, ds: Dataset, eval_batch_size: int) -> None:
        super().__init__(dataset="eurosat", root="/nonexistent", splits={"test": "test"}, batch_size=eval_batch_size,
                         eval_batch_size=eval_batch_size, num_workers=0)
        self.ds = ds

    def check(self) -> None:
        self.datasets = {"test": self.ds}


def test_classification_oa_is_over_images_on_an_unbalanced_split():
    from rsbench.tasks.classification import ClassificationTask

    # 6 images of class 0 (5 right), 2 of class 1 (none right), 1 of class 2 (right)
    labels = [0, 0, 0, 0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 0, 0, 0, 0, 2, 2]
    task = ClassificationTask(backbone={"name": "resnet18", "pretrained": None, "kwargs": {}},
                              optim={"lr": 1e-3, "weight_decay": 0.0}, sched={}, img_size=8, num_classes=3,
                              class_names=["a", "b", "c"])
    task.forward = lambda x: F.one_hot(x[:, 0, 0, 0].long(), 3).float()
    _trainer().test(task, datamodule=SceneDM(Scenes(labels, preds), eval_batch_size=4))  # batches 4, 4, 1
    r = task.test_results
    assert r["OA"] == pytest.approx(100 * 6 / 9)  # not the mean of per-class accuracies, 100 * (5/6 + 0 + 1) / 3
    assert r["per_class"]["accuracy"] == pytest.approx({"a": 100 * 5 / 6, "b": 0.0, "c": 100.0})
    assert r["confusion_matrix"] == [[5, 1, 0], [1, 0, 1], [0, 0, 1]]  # rows = label
    assert r["num_test_samples"] == 9


# -- segmentation: LoveDA's no-data 0 is not a class -------------------------------------------------

# raw LoveDA mask values: 0 no-data, 1 background … 7 agricultural (10 pixels of no-data)
RAW = np.array([[0, 0, 1, 1, 2, 2, 3, 3],
                [0, 0, 1, 1, 2, 2, 3, 3],
                [0, 0, 4, 4, 5, 5, 6, 6],
                [1, 1, 4, 4, 5, 5, 7, 7],
                [1, 1, 2, 2, 7, 7, 7, 7],
                [0, 0, 0, 0, 7, 7, 7, 7]], dtype=np.uint8)


def _prediction() -> np.ndarray:
    """Class ids 0..6: background (0) on every no-data pixel, mostly right elsewhere."""
    pred = np.where(RAW > 0, RAW.astype(np.int64) - 1, 0)
    pred[1, 2:4] = 3  # background → water
    pred[3, 6] = 0  # agricultural → background
    pred[4, 2] = 5  # building → forest
    pred[2, 4] = 1  # barren → building
    return pred


def mmseg_iou_metric(raw: np.ndarray, pred: np.ndarray, k: int = 7) -> dict:
    """mmseg ``reduce_zero_label`` + ``IoUMetric`` in NumPy: 0 → ignored, v → v - 1; nanmean over classes."""
    valid = raw != 0
    gt, pr = raw[valid].astype(np.int64) - 1, pred[valid]
    inter = np.bincount(gt[gt == pr], minlength=k).astype(float)
    area_gt, area_pr = np.bincount(gt, minlength=k).astype(float), np.bincount(pr, minlength=k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area_gt + area_pr - inter)
        acc, prec = inter / area_gt, inter / area_pr
        f1 = 2 * prec * acc / (prec + acc)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (gt, pr), 1)
    return {"mIoU": 100 * np.nanmean(iou), "OA": 100 * inter.sum() / valid.sum(), "mAcc": 100 * np.nanmean(acc),
            "mF1": 100 * np.nanmean(f1), "IoU": 100 * iou, "cm": cm.tolist(), "n": int(valid.sum())}


def test_loveda_no_data_is_ignored_not_scored_as_background(tmp_path):
    from rsbench.data.seg_transforms import build_seg_transforms
    from rsbench.tasks.segmentation import SegmentationTask

    for sub in ("images_png", "masks_png"):
        (tmp_path / "Val" / "Urban" / sub).mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 255, RAW.shape + (3,), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "Val" / "Urban" / "images_png" / "0.png")
    Image.fromarray(RAW).save(tmp_path / "Val" / "Urban" / "masks_png" / "0.png")
    dm = RSDataModule(dataset="loveda", root=tmp_path, splits={"test": "val"}, transforms=build_seg_transforms,
                      batch_size=1, eval_batch_size=1, num_workers=0, img_size=8, dataset_kwargs={"scene": "urban"})
    task = SegmentationTask(backbone={"name": "resnet18", "pretrained": None, "features": "pyramid", "kwargs": {}},
                            num_classes=7, class_names=[str(i) for i in range(7)], optim={"lr": 1e-3, "weight_decay": 0},
                            sched={}, img_size=8, head={"channels": 8})
    pred = torch.from_numpy(_prediction())
    task.infer = lambda img, cfg=None: F.one_hot(pred, 7).permute(2, 0, 1)[None].float().expand(len(img), -1, -1, -1)
    _trainer().test(task, datamodule=dm)
    r, ref = task.test_results, mmseg_iou_metric(RAW, _prediction())
    assert r["num_test_pixels"] == ref["n"] == 38  # 48 pixels, 10 of them no-data
    assert r["confusion_matrix"] == ref["cm"]
    assert r["mIoU"] == pytest.approx(ref["mIoU"]) and r["OA"] == pytest.approx(ref["OA"])
    assert r["mAcc"] == pytest.approx(ref["mAcc"]) and r["mF1"] == pytest.approx(ref["mF1"])
    assert [r["per_class"]["IoU"][str(c)] for c in range(7)] == pytest.approx(list(ref["IoU"]))
    # by hand, background: 6 right of 8 labelled, predicted 7 times → IoU 6 / 9 (scoring the 10 no-data
    # pixels as background would make it 16 / 19)
    assert r["per_class"]["IoU"]["0"] == pytest.approx(100 * 6 / 9)


# -- change detection: the task's test loop, an asymmetric confusion matrix --------------------------

class Pairs(Dataset):
    """Date 1 carries the prediction the fake model will make (0/1 per pixel); masks have ignored pixels."""

    def __init__(self, pairs) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):
        pred, target = (torch.tensor(v) for v in self.pairs[i])
        img = pred.float().expand(3, *pred.shape).contiguous()
        return {"image1": img, "image2": torch.zeros_like(img), "mask": target}


def test_cd_test_loop_scores_the_changed_class_from_an_asymmetric_matrix():
    """Through ChangeDetectionTask.test_step and Lightning's test loop (not the metric collection
    alone). Slips caught: the metric updated as (label, prediction), the "changed" class read
    from the wrong row, precision and recall exchanged."""
    from rsbench.tasks.change_detection import ChangeDetectionTask

    pairs = [  # (prediction, label); by hand: tn 4, fp 1, fn 2, tp 2 and tn 3, fp 1, fn 1, tp 2
        ([[0, 1, 1, 0, 1], [0, 1, 0, 0, 0]], [[0, 0, 1, 1, 255], [0, 1, 0, 0, 1]]),
        ([[0, 0, 1, 1, 1, 0, 1, 0, 0]], [[0, 0, 0, 1, 1, 1, 255, 255, 0]]),
    ]
    task = ChangeDetectionTask(backbone={"name": "resnet18", "pretrained": None, "kwargs": {}, "features": "maps"},
                               optim={"lr": 1e-4, "weight_decay": 0.05, "layer_decay": None}, sched={}, img_size=8,
                               num_classes=2, decoder_channels=(8, 8, 8, 8))
    task.predict_logits = lambda x1, x2, size: F.one_hot(x1[:, 0].long(), 2).permute(0, 3, 1, 2).float()
    dm = SceneDM(Pairs(pairs), eval_batch_size=1)
    _trainer().test(task, datamodule=dm)
    r = task.test_results
    assert r["confusion_matrix"] == [[7, 2], [3, 4]]  # rows = label; tp 4, fn 3, fp 2, tn 7
    assert r["num_test_pixels"] == 16 and r["num_test_samples"] == 2
    assert r["Precision"] == pytest.approx(100 * 4 / 6) and r["Recall"] == pytest.approx(100 * 4 / 7)
    assert r["F1"] == pytest.approx(100 * 8 / 13) and r["IoU"] == pytest.approx(100 * 4 / 9)
    assert r["OA"] == pytest.approx(100 * 11 / 16)
