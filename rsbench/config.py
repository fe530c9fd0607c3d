"""Where rsbench's configs and shipped files are (source checkout or installed wheel), and the OmegaConf
resolvers used by conf/."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def package_path(*parts: str) -> Path:
    """A file or folder shipped inside the installed ``rsbench`` package, as a filesystem path."""
    return Path(str(files("rsbench").joinpath(*parts)))


def _conf_dir() -> Path:
    """Hydra's config tree: ``rsbench/_conf`` in an installed wheel (setup.py ships the repository's
    ``conf/`` under that name), else ``conf/`` beside the package in a source checkout or editable install."""
    installed, checkout = package_path("_conf"), package_path().parent
    if (installed / "config.yaml").is_file():
        return installed
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "config.yaml").is_file():
        return checkout / "conf"
    raise FileNotFoundError(f"rsbench's configs are missing: neither {installed} (installed package) nor "
                            f"{checkout / 'conf'} (source checkout) holds config.yaml; reinstall rsbench")


CONF_DIR = _conf_dir()


def _precision(mode: str = "auto") -> str:
    """``trainer.precision`` for a preset. ``auto`` (conf/trainer/auto.yaml, the default) is ``32-true``
    on every device: the official runs are fp32 (MMEngine's plain OptimWrapper, no AMP).
    ``bf16`` (trainer=gpu_bf16) is ``bf16-mixed``, and an error on a machine without a bf16 GPU
    rather than a silent switch to fp16."""
    if mode in ("auto", "32", "fp32"):
        return "32-true"
    if mode == "bf16":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("trainer=gpu_bf16 needs a GPU and this machine has none: "
                             "use trainer=auto or trainer=cpu (fp32)")
        try:  # emulated bf16 (pre-Ampere GPUs) is slower than fp32: not what the preset is for
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            native = torch.cuda.is_bf16_supported()
        if not native:
            raise ValueError(f"trainer=gpu_bf16: {torch.cuda.get_device_name(0)} has no bf16 support: use "
                             "trainer=gpu (fp32, the paper's) or trainer=gpu trainer.precision=16-mixed")
        return "bf16-mixed"
    raise ValueError(f"rsbench_precision: unknown mode {mode!r} (auto | bf16)")


def _wandb_offline() -> bool:
    """Offline unless the user has set up a key (or asked for online mode explicitly)."""
    if os.environ.get("WANDB_MODE") == "online":
        return False
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path.home() / ".netrc"
    return not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


def _basename(path: str) -> str:
    """``${rsbench_basename:${dataset.root}}``: the last component of a path (absolute, symlinks not followed),
    e.g. ``tag=...`` for a sweep over data roots, quoted for Hydra's override grammar:
    ``python -m rsbench -m dataset.root=/d/a,/d/b "tag='${rsbench_basename:${dataset.root}}'"``."""
    return Path(os.path.abspath(os.path.expanduser(str(path)))).name


def _target_name(target: str | None) -> str:
    """``${rsbench_target_name:${backbone.target}}``: ``MyEncoder`` of ``my_pkg.MyEncoder`` / ``my_pkg:MyEncoder``."""
    return str(target).replace(":", ".").rsplit(".", 1)[-1] if target else "custom"


def _devices(devices: Any) -> int:
    """``${rsbench_devices:${trainer.devices}}``: the number of processes per node a cluster job must ask for
    (hydra/launcher=slurm: one task per GPU); ``auto`` cannot be known before the job runs."""
    if isinstance(devices, (list, tuple)) or (hasattr(devices, "__len__") and not isinstance(devices, str)):
        return len(devices)
    try:
        n = int(devices)
    except (TypeError, ValueError):
        n = 0
    if n <= 0:
        raise ValueError(f"trainer.devices={devices!r}: a cluster job needs the number of GPUs per node, "
                         "e.g. trainer.devices=8")
    return n


def _regime(finetune: Any, label_fraction: Any, fraction_seed: Any = 0) -> str:
    """``${rsbench_regime:${finetune.name},${data.label_fraction},${data.fraction_seed}}``: the part of the run
    folder's name (``run_id``) that keeps the protocols apart: empty for full finetuning on every label (so
    those folders keep their names), else ``-frozen``, ``-frac0.1``, ``-frozen-frac0.01``, ``-frac0.1fs3``
    (fraction seed 3)."""
    out = "" if str(finetune) in ("full", "None", "") else f"-{finetune}"
    try:
        f = float(label_fraction)
    except (TypeError, ValueError):
        return f"{out}-frac{label_fraction}"  # not a number: check_values says so before anything runs
    if f != 1.0:
        out += f"-frac{f:g}" + (f"fs{fraction_seed}" if str(fraction_seed) not in ("0", "None") else "")
    return out


def register_resolvers() -> None:
    resolvers = (("rsbench_precision", _precision), ("rsbench_wandb_offline", _wandb_offline),
                 ("rsbench_cwd", os.getcwd), ("rsbench_basename", _basename), ("rsbench_target_name", _target_name),
                 ("rsbench_devices", _devices), ("rsbench_regime", _regime))
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
