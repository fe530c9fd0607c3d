"""Metrics torchmetrics lacks, and helpers that turn its states into the paper's numbers."""

from rsbench.metrics.detection import DetectionMAP
from rsbench.metrics.rotated import RotatedMeanAveragePrecision

__all__ = ["DetectionMAP", "RotatedMeanAveragePrecision"]
