"""Semantic-segmentation numbers from a confusion matrix, as mmseg's ``IoUMetric`` reports them.

The confusion matrix comes from torchmetrics (``MulticlassConfusionMatrix(num_classes,
ignore_index=255)``; rows = ground truth, columns = prediction, pixels labelled 255 left out).
From it, per class ``c``:

- IoU = TP / (TP + FP + FN)                 (mmseg ``intersect / union``)
- accuracy (recall) = TP / (TP + FN)        (mmseg ``Acc``)
- precision = TP / (TP + FP)
- F1 = 2 · precision · recall / (precision + recall)   (mmseg ``Fscore`` with beta 1)

Undefined values (0/0) are NaN as in mmseg, reported as ``None`` and left out of the means
(mmseg's ``np.nanmean``): IoU of a class in neither the ground truth nor the prediction, recall
of a class absent from the ground truth, precision of a class never predicted, and F1 of every
class with TP = 0 (mmseg's ``f_score`` is then 0/0, so such a class does not lower ``mF1``).
All values are in %.
``mIoU`` is the paper's segmentation number; ``OA`` is mmseg's ``aAcc`` (correct / labelled pixels).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(a, float("nan"))
    ok = b > 0
    out[ok] = a[ok] / b[ok]
    return out


def _nanmean(x: torch.Tensor) -> float | None:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if ok.any() else None


def _list(x: torch.Tensor) -> list[float | None]:
    return [None if v != v else float(v) for v in x.tolist()]


def seg_metrics(confmat: torch.Tensor, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """mIoU, OA, mF1, mAcc, per-class IoU/F1/precision/recall and the matrix itself, in %."""
    cm = confmat.detach().to(torch.float64).cpu()
    k = cm.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}×{k} confusion matrix")
    tp = cm.diag()
    gt = cm.sum(1)
    pred = cm.sum(0)
    iou = _div(tp, gt + pred - tp) * 100
    recall = _div(tp, gt) * 100
    precision = _div(tp, pred) * 100
    f1 = _div(2 * precision * recall, precision + recall)  # NaN where p or r is NaN, or p = r = 0 (TP = 0)
    total = float(cm.sum())
    return {
        "mIoU": _nanmean(iou),
        "OA": float(tp.sum() / total * 100) if total else None,
        "mF1": _nanmean(f1),
        "mAcc": _nanmean(recall),
        "per_class": {
            "IoU": dict(zip(names, _list(iou))),
            "F1": dict(zip(names, _list(f1))),
            "precision": dict(zip(names, _list(precision))),
            "recall": dict(zip(names, _list(recall))),
        },
        "confusion_matrix": confmat.detach().cpu().long().tolist(),
        "class_names": names,
        "num_test_pixels": int(total),
    }
