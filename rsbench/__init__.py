"""rsbench: downstream-finetuning benchmark suite for remote-sensing foundation models."""

__version__ = "0.1.0"
