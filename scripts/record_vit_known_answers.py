"""Record known answers of the OFFICIAL MTP ViT+RVSA code for ``tests/test_vit_rvsa.py``.

For each layout below it builds the official pretraining encoder (``ViT_Win_RVSA_V3_WSZ7``, whose
``state_dict`` has exactly the keys of a released ``*_encoder.pth``: ``patch_embed``, ``pos_embed``,
``blocks.*`` with RVSA / ``full_attn_rel_pos`` tensors and ``relative_position_index``, ``norm``,
``fpn1``, ``fpn2``), fills it with random values (rounded to float16 so the stored copy is exact and
half the size), saves it as ``{'epoch', 'iteration', 'state_dict'}`` like ``main_pretrain.py``, and
runs the official finetuning classes (cls: Scene_Classification ``RVSA_MTP``, seg:
Semantic_Segmentation ``RVSA_MTP``, det: Horizontal_Detection ``RVSA_MTP_branches``, cd:
Change_Detection ``RVSA_MTP``), each loading the file through its own ``init_weights``, on random
inputs in eval mode (uint8 codes c, input (c − 127.5)/64). Checkpoint, inputs and outputs go to ``tests/data/vit_rvsa/<layout>.pt``.

Layouts (narrow widths keep the files small; depth, interval, heads and out_indices are the real
ones for ``b_layout`` and ``l_layout``):
    tiny      embed 16, depth 4, heads 2, interval 2; checkpoint grid 14 (224 px);
              cls/cd/seg/det at 176 (grid 11: pos_embed and rel-pos resized, uneven window
              padding) and cls at 224 (same grid as the checkpoint, no padding).
    b_layout  ViT-B layout (depth 12, interval 3, 12 heads, out [3,5,7,11]) at embed 24;
              checkpoint grid 14 (the released ViT-B is 224 px); cls at 224, seg at 160.
    l_layout  ViT-L layout (depth 24, interval 6, 16 heads, out [7,11,15,23]) at embed 32;
              checkpoint grid 28 (the released ViT-L is 448 px); cls at 224, det at 160.

Usage (official source extracted as described in scripts/official_rvsa.py)::

    python scripts/record_vit_known_answers.py --official-root /tmp/mtp_ref \
        --official-commit 13cc2b71825d0ad5c6b15a21fc7df6abcbe005cc
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_rvsa import build_official  # noqa: E402

LAYOUTS = {
    "tiny": dict(
        arch=dict(embed_dim=16, depth=4, num_heads=2, out_indices=[0, 1, 2, 3], interval=2),
        ckpt_img=224,
        runs=[("cls", 176, 2), ("cd", 176, 1), ("seg", 176, 1), ("det", 176, 1), ("cls", 224, 1)],
    ),
    "b_layout": dict(
        arch=dict(embed_dim=24, depth=12, num_heads=12, out_indices=[3, 5, 7, 11], interval=3),
        ckpt_img=224,
        runs=[("cls", 224, 1), ("seg", 160, 1)],
    ),
    "l_layout": dict(
        arch=dict(embed_dim=32, depth=24, num_heads=16, out_indices=[7, 11, 15, 23], interval=6),
        ckpt_img=448,
        runs=[("cls", 224, 1), ("det", 160, 1)],
    ),
}

COMMON = dict(patch_size=16, mlp_ratio=4, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
              use_abs_pos_emb=True)


def random_weights(sd: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Plausible random values for every float tensor (O(1) activations, visible rotations/offsets)."""
    out = {}
    for k, v in sd.items():
        if not v.dtype.is_floating_point:
            out[k] = v.clone()
            continue
        r = torch.randn(v.shape, generator=gen)
        if k.endswith(("norm1.weight", "norm2.weight", "norm.weight", "ln.weight")):
            t = 1 + 0.1 * r
        elif k.endswith(".bias") and "sampling_angles" in k:
            t = 0.5 * r  # angles up to ~1 rad
        elif k.endswith(".bias"):
            t = 0.05 * r
        elif "sampling_" in k:
            t = r * (0.3 / math.sqrt(v.shape[1]))
        elif "rel_pos" in k or "relative_position_bias_table" in k:
            t = 0.3 * r
        elif k == "pos_embed":
            t = 0.1 * r
        elif v.ndim >= 2:
            fan_in = v[0].numel() if "fpn" not in k else v.shape[0] * v[0, 0].numel()
            t = r / math.sqrt(fan_in)
        else:
            t = 0.05 * r
        out[k] = t.half().float()  # exactly representable in the float16 copy stored for the test
    return out


def decode_input(codes: torch.Tensor) -> torch.Tensor:
    return (codes.float() - 127.5) / 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official-root", required=True, help="folder with the extracted official files")
    ap.add_argument("--official-commit", default="13cc2b71825d0ad5c6b15a21fc7df6abcbe005cc")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/data/vit_rvsa"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.use_deterministic_algorithms(True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "python scripts/record_vit_known_answers.py " + " ".join(sys.argv[1:])

    for li, (name, spec) in enumerate(LAYOUTS.items()):
        gen = torch.Generator().manual_seed(args.seed * 1000 + li)
        arch = spec["arch"]
        pre = build_official(args.official_root, "pretrain", img_size=spec["ckpt_img"], drop_path_rate=0.0,
                             **COMMON, **arch)
        sd = random_weights(pre.state_dict(), gen)
        inputs: dict[int, torch.Tensor] = {}
        for _, img, batch in spec["runs"]:  # one input per size, as large as its largest batch
            inputs[img] = torch.zeros(max(batch, inputs[img].shape[0] if img in inputs else 0))
        # uint8 codes; the input is (code - 127.5) / 64, exact in float32 on any machine
        inputs = {img: torch.randint(0, 256, (len(t), 3, img, img), generator=gen, dtype=torch.uint8)
                  for img, t in inputs.items()}
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            ckpt_path = Path(tmp) / "last_vit_rvsa_ss_is_rd_pretrn_model_encoder.pth"
            torch.save({"epoch": 0, "iteration": 0, "state_dict": sd}, ckpt_path)
            for variant, img, batch in spec["runs"]:
                x = decode_input(inputs[img][:batch])
                model = build_official(args.official_root, variant, pretrained=str(ckpt_path), img_size=img,
                                       drop_path_rate=0.3, **COMMON, **arch).eval()
                with torch.no_grad():
                    outs = [o.detach().clone() for o in model(x)]
                runs.append(dict(variant=variant, img_size=img, batch=batch, outputs=outs))
                print(f"{name}: {variant} @ {img} x{batch} -> {[tuple(o.shape) for o in outs]}")
        record = dict(
            layout=name,
            arch=arch,
            ckpt_img_size=spec["ckpt_img"],
            # float tensors as float16 (exact, see random_weights); the int64 relative_position_index
            # buffers as int16 (values < 169): the test writes them back as int64
            state_dict_fp16={k: (v.half() if v.dtype.is_floating_point else v.short()) for k, v in sd.items()},
            official_keys=list(pre.state_dict().keys()),
            inputs_u8=inputs,
            runs=runs,
            official_commit=args.official_commit,
            command=command,
            torch_version=torch.__version__,
        )
        path = out_dir / f"{name}.pt"
        torch.save(record, path)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
