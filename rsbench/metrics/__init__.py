"""Metrics torchmetrics lacks, and helpers that turn its states into the paper's numbers."""
