"""One LightningModule per task; shared optimiser and schedule in :mod:`rsbench.tasks.base`."""
