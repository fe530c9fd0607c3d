"""OmegaConf resolvers used by conf/ and helpers for reading the composed config."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _precision(mode: str = "auto") -> str:
    import torch

    if mode == "auto" and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _wandb_offline() -> bool:
    """Offline unless the user has set up a key (or asked for online mode explicitly)."""
    if os.environ.get("WANDB_MODE") == "online":
        return False
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path.home() / ".netrc"
    return not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


def register_resolvers() -> None:
    resolvers = (("rsbench_precision", _precision), ("rsbench_wandb_offline", _wandb_offline),
                 ("rsbench_cwd", os.getcwd))
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
