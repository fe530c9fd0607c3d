"""Scene classification: backbone → global average pooling of the last map → linear head (CE)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from rsbench.tasks.base import BaseTask


class ClassificationTask(BaseTask):
    """MMPretrain's ``ImageClassifier`` of the MTP recipe: GAP of the last backbone map, a linear
    head initialised N(0, 0.01), plain cross-entropy. Reports OA (%), per-class accuracy and the
    confusion matrix on the test split."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        num_classes = self.num_classes
        self.head = nn.Linear(self.backbone.out_channels[-1], num_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.val_oa = MulticlassAccuracy(num_classes, average="micro")
        self.test_oa = MulticlassAccuracy(num_classes, average="micro")
        self.test_per_class = MulticlassAccuracy(num_classes, average="none")
        self.test_cm = MulticlassConfusionMatrix(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)[-1]
        return self.head(feats.mean(dim=(2, 3)))

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        logits = self(batch["image"])
        self.val_oa.update(logits, batch["label"])

    def on_validation_epoch_end(self) -> None:
        self.log("val/OA", float(self.val_oa.compute()) * 100, prog_bar=True)  # %, as test/OA and every other metric
        self.val_oa.reset()

    def test_step(self, batch: dict[str, torch.Tensor], _: int) -> dict[str, torch.Tensor]:
        logits = self(batch["image"])
        for m in (self.test_oa, self.test_per_class, self.test_cm):
            m.update(logits, batch["label"])
        return {"prediction": logits.argmax(1)}

    def on_test_epoch_end(self) -> None:
        oa = float(self.test_oa.compute()) * 100
        per_class = (self.test_per_class.compute() * 100).tolist()
        cm = self.test_cm.compute().long().tolist()
        self.log("test/OA", oa)
        self.test_results = {
            "OA": oa,
            "per_class": {"accuracy": dict(zip(self.class_names, per_class))},
            "confusion_matrix": cm,
            "class_names": self.class_names,
            "num_test_samples": int(sum(map(sum, cm))),
        }
        for m in (self.test_oa, self.test_per_class, self.test_cm):
            m.reset()
