"""Record known answers of the official DCNv3 / InternImage code for rsbench's tests.

    python scripts/record_internimage_known_answers.py --official-root PATH [--out tests/data/internimage]

``PATH`` holds the official ``intern_image.py`` and ``ops_dcnv3/`` (e.g. the
``RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones`` folder of a checkout of
github.com/ViTAE-Transformer/MTP; see ``scripts/official_internimage.py``). The official code is
imported only here, with its compiled extension and mm* registries stubbed out, so the
pure-PyTorch path runs (``dcnv3_core_pytorch``, ``DCNv3_pytorch``). Writes:

* ``dcnv3_core.pt``: random inputs, offsets, masks and output gradients for a few operator
  configurations, with the official core's outputs and its gradients w.r.t. input, offset, mask;
* ``internimage_tiny.pt``: two small InternImage configurations built with the same constructor
  arguments in the official class (``core_op='DCNv3_pytorch'``) — their (randomised) weights in
  the official key layout, an input batch, and the four feature maps in eval mode.

Everything is float32 on CPU, seeded, and small (about 2 MB in all).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_internimage import load_official  # noqa: E402

CORE_CASES = [
    # name, N, H, W, kwargs of the core (besides group_channels), offset std
    ("xl_like", 2, 9, 11, dict(kernel=3, stride=1, pad=1, dilation=1, group=3, group_channels=8, offset_scale=2.0, remove_center=0), 2.0),
    ("far_offsets", 1, 7, 6, dict(kernel=3, stride=1, pad=1, dilation=1, group=2, group_channels=4, offset_scale=2.0, remove_center=0), 8.0),
    ("stride2_dil2_pad2", 2, 10, 9, dict(kernel=3, stride=2, pad=2, dilation=2, group=2, group_channels=4, offset_scale=1.0, remove_center=0), 1.5),
    ("k5_remove_center", 1, 8, 7, dict(kernel=5, stride=1, pad=2, dilation=1, group=2, group_channels=4, offset_scale=1.5, remove_center=1), 1.0),
]

TINY_ARCHS = {
    "xl_like": dict(channels=16, depths=[1, 1, 2, 1], groups=[2, 4, 8, 16], mlp_ratio=4.0, layer_scale=1e-5,
                    offset_scale=2.0, post_norm=True, drop_path_rate=0.2),
    "pre_norm": dict(channels=8, depths=[1, 1, 1, 1], groups=[1, 2, 4, 8], mlp_ratio=2.0, layer_scale=None,
                     offset_scale=1.0, post_norm=False, drop_path_rate=0.1),
}
TINY_INPUT = (2, 3, 64, 96)


def out_size(size: int, pad: int, k: int, stride: int, dil: int) -> int:
    return (size + 2 * pad - (dil * (k - 1) + 1)) // stride + 1


def record_core(official, gen: torch.Generator) -> list[dict]:
    cases = []
    for name, N, H, W, kw, off_std in CORE_CASES:
        k, s, p, d, G, Cg = kw["kernel"], kw["stride"], kw["pad"], kw["dilation"], kw["group"], kw["group_channels"]
        P = k * k - kw["remove_center"]
        Ho, Wo = out_size(H, p, k, s, d), out_size(W, p, k, s, d)
        x = torch.randn(N, H, W, G * Cg, generator=gen)
        offset = torch.randn(N, Ho, Wo, G * P * 2, generator=gen) * off_std
        mask = torch.randn(N, Ho, Wo, G, P, generator=gen).softmax(-1).reshape(N, Ho, Wo, G * P)
        grad_output = torch.randn(N, Ho, Wo, G * Cg, generator=gen)
        leaves = [t.clone().requires_grad_() for t in (x, offset, mask)]
        out = official.dcnv3_core_pytorch(*leaves, k, k, s, s, p, p, d, d, G, Cg, kw["offset_scale"], kw["remove_center"])
        out.backward(grad_output)
        cases.append(dict(
            name=name, args=dict(kw), input=x, offset=offset, mask=mask, grad_output=grad_output,
            output=out.detach(), grad_input=leaves[0].grad, grad_offset=leaves[1].grad, grad_mask=leaves[2].grad,
        ))
        print(f"core {name}: in {tuple(x.shape)} out {tuple(out.shape)}")
    return cases


def randomise(sd: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Weights far from the official init (zero offsets, uniform mask, layer scale 1e-5), so every
    path of the network shows in the features."""
    out = {}
    for k, v in sd.items():
        if not v.dtype.is_floating_point:
            out[k] = v.clone()
        elif k.endswith(("gamma1", "gamma2")):
            out[k] = 0.5 + torch.rand(v.shape, generator=gen)
        elif v.ndim == 1:
            out[k] = (1.0 if k.endswith("weight") else 0.0) + 0.1 * torch.randn(v.shape, generator=gen)
        else:
            out[k] = torch.randn(v.shape, generator=gen) / v[0].numel() ** 0.5
    return out


def record_tiny(official, gen: torch.Generator) -> dict:
    models = {}
    x = torch.randn(*TINY_INPUT, generator=gen)
    for name, arch in TINY_ARCHS.items():
        model = official.InternImage(core_op="DCNv3_pytorch", norm_layer="LN", act_layer="GELU", **arch)
        sd = randomise(model.state_dict(), gen)
        model.load_state_dict(sd)
        model.eval()
        with torch.no_grad():
            feats = [f.clone() for f in model(x)]
        models[name] = dict(arch=arch, state_dict=sd, features=feats)
        print(f"internimage {name}: {sum(v.numel() for v in sd.values())} numbers, maps {[tuple(f.shape) for f in feats]}")
    return dict(input=x, models=models)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official-root", required=True, help="folder with the official intern_image.py and ops_dcnv3/")
    ap.add_argument("--out", default="tests/data/internimage", help="output folder")
    ap.add_argument("--seed", type=int, default=20240318)
    args = ap.parse_args()
    official = load_official(args.official_root)
    torch.set_num_threads(1)
    meta = dict(
        command="python scripts/record_internimage_known_answers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        official_commit=official.commit,
        official_files="intern_image.py, ops_dcnv3/functions/dcnv3_func.py, ops_dcnv3/modules/dcnv3.py",
        torch=torch.__version__,
        date=datetime.date.today().isoformat(),
        seed=args.seed,
    )
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(dict(meta=meta, cases=record_core(official, gen)), out / "dcnv3_core.pt")
    torch.save(dict(meta=meta, **record_tiny(official, gen)), out / "internimage_tiny.pt")
    for f in ("dcnv3_core.pt", "internimage_tiny.pt"):
        print(f"wrote {out / f} ({(out / f).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
