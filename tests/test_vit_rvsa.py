"""ViT-B/L + RVSA backbones: sizes, shapes, layer ids, gradients, and known answers of the official code.

Known answers (``tests/data/vit_rvsa/{tiny,b_layout,l_layout}.pt``) were recorded from the
official MTP implementation, github.com/ViTAE-Transformer/MTP at commit
13cc2b71825d0ad5c6b15a21fc7df6abcbe005cc (``RS_Tasks_Finetune/*/models/backbones/
vit_rvsa_mtp{,_branches}.py``; mm* registries stubbed), with::

    python scripts/record_vit_known_answers.py --official-root /tmp/mtp_ref

after extracting the official files into /tmp/mtp_ref (see scripts/official_rvsa.py). Each file
holds a checkpoint in the released encoder layout (random values, float16-exact), uint8 input
codes and the official outputs of the cls / cd / seg / det classes, each loaded through the
official ``init_weights`` (prefix handling, pos_embed and full_attn_rel_pos bicubic resizing).
The test writes the checkpoint back as ``{'epoch', 'iteration', 'state_dict'}``, builds the
rsbench equivalent of each official copy (``OFFICIAL_COPIES``) with ``build_backbone(...,
pretrained=<file>)`` and requires agreement to 1e-4 relative to each map's largest value.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rsbench.models.backbones.vit_rvsa as vr
from rsbench.models import build_backbone
from rsbench.models.layer_decay import param_groups

DATA = Path(__file__).parent / "data" / "vit_rvsa"
TINY = dict(embed_dim=32, depth=4, num_heads=2, out_indices=[0, 1, 2, 3], interval=2)
ARCH = {"vitb_rvsa": vr.VITB, "vitl_rvsa": vr.VITL}
# the official copies (RS_Tasks_Finetune/<task>/.../vit_rvsa_mtp*.py) and how rsbench builds each
OFFICIAL_COPIES = {
    "cls": dict(features="maps"),
    "cd": dict(features="maps"),
    "seg": dict(features="pyramid"),
    "det": dict(features="pyramid", rel_pos=False),
}


def _copy(variant, name="vitb_rvsa", img=224, **kw):
    """The rsbench equivalent of the official ``variant`` copy (drop path 0, as the class default)."""
    return build_backbone(name, img_size=img, **{"drop_path_rate": 0.0, **OFFICIAL_COPIES[variant], **kw})


def _tiny(variant="cls", img=224, **kw):
    torch.manual_seed(0)
    return _copy(variant, img=img, **{**TINY, **kw})


# ----------------------------------------------------------------------------- sizes


def _count_formula(C, depth, heads, interval, grid, variant):
    """Parameters of the backbone by formula (weights + biases), for a grid×grid token map."""
    d = C // heads
    n = 3 * 16 * 16 * C + C  # patch embedding
    n += grid * grid * C  # pos_embed (no cls token)
    per_block = 2 * 2 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    for i in range(depth):
        n += per_block
        if (i + 1) % interval:  # RVSA: rel-pos (13, d) ×2, offsets/scales (2 per head), angles, bias table
            n += 2 * 13 * d + 2 * (C * 2 * heads + 2 * heads) + (C * heads + heads) + 169 * heads
        elif variant != "det":  # global attention rel-pos tables (2g−1, d) ×2
            n += 2 * (2 * grid - 1) * d
    if variant in ("seg", "det"):  # fpn1: ConvT, LN, ConvT; fpn2: ConvT
        n += 3 * (C * C * 4 + C) + 2 * C
    return n


@pytest.mark.parametrize("name,expect_m", [("vitb_rvsa", 86), ("vitl_rvsa", 305)])
def test_parameter_counts_full_configs(name, expect_m):
    """Paper: ViT-B+RVSA 86 M, ViT-L+RVSA 305 M.

    The paper's count is the cls/cd backbone at 224 px: patch embedding, pos_embed, all blocks
    with their RVSA predictors and rel-pos tables, WITHOUT the fpn ops and without the final
    ``norm`` (which no finetuning variant uses). Built on the meta device: nothing is allocated.
    """
    arch = ARCH[name]
    for variant in ("cls", "seg", "det"):
        with torch.device("meta"):
            m = build_backbone(name, img_size=224, **OFFICIAL_COPIES[variant])
        n = sum(p.numel() for p in m.parameters())
        assert n == _count_formula(arch["embed_dim"], arch["depth"], arch["num_heads"], arch["interval"], 14, variant)
        if variant == "cls":
            assert round(n / 1e6) == expect_m, n
    counts = {"vitb_rvsa": (86_208_064, 93_289_792), "vitl_rvsa": (305_038_720, 317_626_752)}[name]
    with torch.device("meta"):
        cls = build_backbone(name, img_size=224)
        seg = build_backbone(name, img_size=224, features="pyramid")
    assert sum(p.numel() for p in cls.parameters()) == counts[0]  # without fpn
    assert sum(p.numel() for p in seg.parameters()) == counts[1]  # with fpn1/fpn2 weights


def test_full_layouts():
    with torch.device("meta"):
        b = build_backbone("vitb_rvsa", img_size=512, **OFFICIAL_COPIES["seg"])
        l = build_backbone("vitl_rvsa", img_size=512, **OFFICIAL_COPIES["det"])
    assert b.body.out_indices == [3, 5, 7, 11] and l.body.out_indices == [7, 11, 15, 23]
    glob_b = [i for i, blk in enumerate(b.blocks) if isinstance(blk.attn, vr.FullAttention)]
    glob_l = [i for i, blk in enumerate(l.blocks) if isinstance(blk.attn, vr.FullAttention)]
    assert glob_b == [2, 5, 8, 11] and glob_l == [5, 11, 17, 23]
    assert b.num_layer_ids == 14 and l.num_layer_ids == 26
    assert b.blocks[2].attn.full_attn_rel_pos_h.shape == (63, 64)
    assert not hasattr(l.blocks[5].attn, "full_attn_rel_pos_h")  # det: no global rel-pos
    assert b.out_channels == [768] * 4 and l.out_channels == [1024] * 4
    # linear stochastic depth 0 → drop_path_rate (0.3 by default, the finetune recipe)
    assert b.blocks[0].drop_path.__class__.__name__ == "Identity"
    assert b.blocks[-1].drop_path.drop_prob == pytest.approx(0.3)
    assert l.blocks[12].drop_path.drop_prob == pytest.approx(0.3 * 12 / 23)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("img", [224, 256, 384, 512, 800])
def test_feature_shapes_every_variant(img):
    x = torch.randn(1, 3, img, img)
    g = img // 16
    for variant in ("cls", "cd", "seg", "det"):
        m = build_backbone("vitb_rvsa", img_size=img, **OFFICIAL_COPIES[variant], **TINY).eval()
        with torch.no_grad():
            out = m(x)
        assert len(out) == 4 and len(m.out_channels) == 4 and len(m.out_strides) == 4
        for o, c, s in zip(out, m.out_channels, m.out_strides):
            assert o.shape == (1, c, img // s, img // s) and o.is_contiguous()
            assert torch.isfinite(o).all()
        if variant in ("cls", "cd"):
            assert m.out_strides == [16] * 4 and out[0].shape[-1] == g
        else:
            assert m.out_strides == [4, 8, 16, 32]


def test_wrong_input_size_raises():
    m = _tiny(img=224)
    with pytest.raises(ValueError, match="224x224"):
        m(torch.randn(1, 3, 256, 256))


def test_bad_configurations_are_config_errors():
    from rsbench.errors import ConfigError

    with pytest.raises(ConfigError, match="7x7 tokens"):
        _tiny(img=96)  # the official code would divide by 96 // 16 // 7 = 0
    with pytest.raises(ConfigError, match="features"):
        build_backbone("vitb_rvsa", img_size=224, features="mask", **TINY)
    with pytest.raises(ConfigError, match="out_indices"):
        _tiny(variant="seg", out_indices=[0, 1, 3])
    with pytest.raises(ConfigError, match="out_indices"):
        _tiny(out_indices=[1, 1, 2, 3])


def test_non_rgb_input_and_registry_kwargs():
    m = build_backbone("vitl_rvsa", img_size=128, in_chans=13, features="pyramid", drop_path_rate=0.1, **TINY)
    assert m.patch_embed.proj.weight.shape[1] == 13
    out = m.eval()(torch.randn(2, 13, 128, 128))
    assert [o.shape[-1] for o in out] == [32, 16, 8, 4]


# ----------------------------------------------------------------------------- layer decay


def test_layer_ids_follow_official_rule():
    m = _tiny(variant="seg")
    L = m.num_layer_ids
    assert L == TINY["depth"] + 2
    assert m.layer_id("pos_embed") == 0 and m.layer_id("patch_embed.proj.weight") == 0
    assert m.layer_id("cls_token") == 0 and m.layer_id("mask_token") == 0
    assert m.layer_id("blocks.0.attn.qkv.weight") == 1
    assert m.layer_id("blocks.3.attn.full_attn_rel_pos_h") == 4
    assert m.layer_id("fpn1.0.weight") == L - 1 and m.layer_id("norm.weight") == L - 1
    head = torch.nn.Linear(2, 2)
    wrapper = torch.nn.ModuleDict({"backbone": m, "head": head})
    groups = param_groups(
        wrapper.named_parameters(), backbone=m, backbone_prefix="backbone.", lr=1.0, weight_decay=0.05,
        layer_decay=0.9,
    )
    by_name = {n: g for g in groups for n in g["param_names"]}
    assert by_name["backbone.pos_embed"]["lr_scale"] == pytest.approx(0.9 ** (L - 1))
    assert by_name["backbone.pos_embed"]["weight_decay"] == 0.0
    assert by_name["backbone.blocks.0.attn.rel_pos_h"]["weight_decay"] == 0.05  # 2-D tables decay
    assert by_name["backbone.blocks.0.attn.qkv.bias"]["weight_decay"] == 0.0
    assert by_name["backbone.blocks.2.mlp.fc1.weight"]["lr_scale"] == pytest.approx(0.9 ** (L - 4))
    assert by_name["backbone.fpn2.0.weight"]["lr_scale"] == 1.0 and by_name["head.weight"]["lr_scale"] == 1.0


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("variant", ["cls", "seg", "det"])
def test_every_parameter_gets_a_gradient(variant):
    """No unused parameters (DDP without find_unused_parameters works)."""
    m = _tiny(variant=variant, img=176).train()
    sum(o.mean() for o in m(torch.randn(1, 3, 176, 176))).backward()
    assert [n for n, p in m.named_parameters() if p.grad is None] == []


def test_grad_checkpointing_matches():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 144, 144)
    a = _tiny(variant="seg", img=144, drop_path_rate=0.0)
    b = _tiny(variant="seg", img=144, drop_path_rate=0.0, grad_ckpt=True)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        sum((o * o).mean() for o in m.train()(x)).backward()
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_window_sdpa_path_matches_explicit(monkeypatch):
    """The CUDA path (SDPA with a differentiable float mask) computes what the CPU path does."""
    m = _tiny(img=176)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(1, 3, 176, 176)
    ref = m(x)
    monkeypatch.setattr(vr, "_FORCE_WINDOW_SDPA", True)
    out = m(x)
    for r, o in zip(ref, out):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- known answers


def _known_answer_files():
    return sorted(DATA.glob("*.pt"))


def test_known_answer_files_present():
    assert {p.stem for p in _known_answer_files()} >= {"tiny", "b_layout", "l_layout"}
    assert sum(p.stat().st_size for p in _known_answer_files()) < 5e6


@pytest.mark.parametrize("path", _known_answer_files(), ids=lambda p: p.stem)
def test_known_answers_of_official_code(path, tmp_path):
    rec = torch.load(path, map_location="cpu", weights_only=False)
    sd = {k: (v.float() if v.dtype.is_floating_point else v.long()) for k, v in rec["state_dict_fp16"].items()}
    ckpt = tmp_path / "last_vit_rvsa_ss_is_rd_pretrn_model_encoder.pth"
    torch.save({"epoch": 0, "iteration": 0, "state_dict": sd}, ckpt)
    # the released layout: our seg equivalent + the unused final norm has exactly the official keys
    seg = _copy("seg", img=rec["ckpt_img_size"], **rec["arch"])
    assert set(seg.state_dict()) | {"norm.weight", "norm.bias"} == set(rec["official_keys"])
    for run in rec["runs"]:
        model = _copy(run["variant"], img=run["img_size"], pretrained=str(ckpt), **rec["arch"]).eval()
        report = model.load_report
        assert report.missing == [] and report.unexpected == []
        x = (rec["inputs_u8"][run["img_size"]][: run["batch"]].float() - 127.5) / 64
        with torch.no_grad():
            outs = model(x)
        assert len(outs) == len(run["outputs"])
        for i, (o, e) in enumerate(zip(outs, run["outputs"])):
            assert o.shape == e.shape
            err = ((o - e).abs().max() / e.abs().max()).item()
            assert err < 1e-4, f"{path.stem} {run['variant']}@{run['img_size']} map {i}: rel err {err:.2e}"
