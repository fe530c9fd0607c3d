"""Released weights by name: ``backbone.pretrained=mtp`` → the official file under ``weights_dir``.

Nothing is downloaded. When the file is absent the error names the file, the folder it was
looked for in, and where the authors publish it. A run resolves its weights once, before any model
is built, and passes the path on; ``build_backbone`` calls :func:`resolve_weights` too, which for a
path only checks that the file is there (so the Python API also takes a tag).
"""

from __future__ import annotations

import os
from pathlib import Path

from rsbench.errors import WeightsError

MTP_HOSTS = (
    "the MTP release (github.com/ViTAE-Transformer/MTP, 'Pretrained models'): "
    "Baidu Pan https://pan.baidu.com/s/1Zh6yv2AouboGEP4phyR7xA (code yqv9) or "
    "OneDrive https://1drv.ms/f/s!AimBgYV7JjTlgcpa7t2sywuWOm3HQA"
)

# (backbone name, weights tag) -> (released file name, where it is published)
RELEASED: dict[tuple[str, str], tuple[str, str]] = {
    ("vitb_rvsa", "mtp"): ("last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth", MTP_HOSTS),
    ("vitl_rvsa", "mtp"): ("last_vit_l_rvsa_ss_is_rd_pretrn_model_encoder.pth", MTP_HOSTS),
    ("internimage_xl", "mtp"): ("last_internimage_xl_ss_is_rd_pretrn_model_encoder.pth", MTP_HOSTS),
}


def default_weights_dir() -> Path:
    return Path(os.environ.get("RSBENCH_WEIGHTS", "weights")).expanduser()


def resolve_weights(backbone: str, pretrained: str | None, weights_dir: str | Path | None = None) -> Path | None:
    """Turn ``pretrained`` (None, a tag such as ``mtp``, or a path) into an existing file path."""
    if pretrained in (None, "", "none", "None", False):
        return None
    wdir = Path(weights_dir).expanduser() if weights_dir else default_weights_dir()
    key = (backbone, str(pretrained))
    if key in RELEASED:
        fname, where = RELEASED[key]
        path = wdir / fname
        if not path.is_file():
            raise WeightsError(
                f"backbone {backbone!r} with pretrained={pretrained!r} needs the released file\n"
                f"  {fname}\nin the weights folder\n  {wdir.resolve()}\n"
                f"(set paths.weights_dir=... or the RSBENCH_WEIGHTS environment variable to move it). "
                f"Get it from {where}. rsbench never downloads weights."
            )
        return path
    path = Path(str(pretrained)).expanduser()
    if not path.is_absolute() and not path.exists():
        path = wdir / path
    if not path.is_file():
        tags = sorted(t for (b, t) in RELEASED if b == backbone)
        hint = f"known tags for {backbone}: {', '.join(tags)}; " if tags else ""
        raise WeightsError(
            f"pretrained weights {pretrained!r} for backbone {backbone!r}: no such file "
            f"(looked at {path.resolve()}). {hint}or give the path to a checkpoint file."
        )
    return path
