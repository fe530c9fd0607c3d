"""InternImage-XL backbone (:mod:`rsbench.models.backbones.internimage`).

Known answers: ``tests/data/internimage/internimage_tiny.pt`` holds two small configurations
built with the same constructor arguments in the official ``InternImage`` class
(github.com/ViTAE-Transformer/MTP, commit 13cc2b71825d0ad5c6b15a21fc7df6abcbe005cc,
``RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones/intern_image.py`` with
``core_op='DCNv3_pytorch'``): randomised weights in the official key layout, an input batch and
the four feature maps (eval mode), recorded with

    python scripts/record_internimage_known_answers.py \\
        --official-root <MTP checkout>/RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones

(the exact command and commit are also in the file's ``meta``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from rsbench.errors import WeightsError
from rsbench.models import build_backbone
from rsbench.models.backbones.internimage import InternImage
from rsbench.models.layer_decay import param_groups

DATA = Path(__file__).parent / "data" / "internimage" / "internimage_tiny.pt"
TINY = dict(channels=8, depths=[1, 1, 1, 1], groups=[1, 2, 4, 8], drop_path_rate=0.0)
XL_DEPTHS = [5, 5, 24, 5]


@pytest.fixture(scope="module")
def known():
    return torch.load(DATA, weights_only=False)


@pytest.mark.parametrize("name", ["xl_like", "pre_norm"])
def test_features_match_official(known, name):
    rec = known["models"][name]
    model = build_backbone("internimage_xl", img_size=tuple(known["input"].shape[-2:]), **rec["arch"])
    assert list(model.state_dict()) == list(rec["state_dict"])  # same names, same order
    model.load_state_dict(rec["state_dict"])
    model.eval()
    with torch.no_grad():
        feats = model(known["input"])
    assert len(feats) == 4
    for f, ref in zip(feats, rec["features"]):
        assert f.shape == ref.shape
        torch.testing.assert_close(f, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_xl_parameter_count_and_names():
    """The XL backbone: stem, four levels with downsamples, no head — 328,971,228 parameters.

    The paper's 335 M is InternImage-XL as a classifier: the official classification model adds
    ``conv_head`` (1x1 conv 1536→2304 without bias, BatchNorm) and a 1000-way ``head``; counting
    those gives 334.8 M. Built on the ``meta`` device, nothing is allocated.
    """
    with torch.device("meta"):
        model = build_backbone("internimage_xl", img_size=512)
    n = sum(p.numel() for p in model.parameters())
    assert n == 328_971_228
    cls_head = 1536 * 2304 + 2 * 2304 + 2304 * 1000 + 1000
    assert round((n + cls_head) / 1e6) == 335
    assert model.out_channels == [192, 384, 768, 1536]
    assert model.out_strides == [4, 8, 16, 32]
    names = set(model.state_dict())
    for key in (
        "patch_embed.conv1.weight", "patch_embed.norm1.1.weight", "patch_embed.conv2.weight", "patch_embed.norm2.1.bias",
        "levels.0.blocks.0.dcn.input_proj.weight", "levels.0.blocks.0.dcn.output_proj.bias",
        "levels.2.blocks.23.dcn.offset.weight", "levels.2.blocks.23.dcn.mask.bias",
        "levels.3.blocks.4.dcn.dw_conv.0.weight", "levels.3.blocks.4.dcn.dw_conv.1.1.weight",
        "levels.1.blocks.2.gamma1", "levels.1.blocks.2.gamma2", "levels.1.blocks.2.norm1.0.weight",
        "levels.1.blocks.2.mlp.fc1.weight", "levels.0.downsample.conv.weight", "levels.2.downsample.norm.1.weight",
    ):
        assert key in names, key
    assert "levels.3.downsample.conv.weight" not in names and "levels.0.norm.0.weight" not in names
    assert model.levels[2].blocks[0].dcn.offset.out_features == 48 * 9 * 2
    dp = [blk.drop_path for lvl in model.levels for blk in lvl.blocks]
    assert isinstance(dp[0], nn.Identity) and dp[-1].drop_prob == pytest.approx(0.2)
    assert dp[19].drop_prob == pytest.approx(0.2 * 19 / 38)


@pytest.mark.parametrize("size", [224, 256, 384, 512, 800])
def test_output_shapes_at_recipe_sizes(size):
    model = build_backbone("internimage_xl", img_size=size, **TINY).eval()
    with torch.no_grad():
        feats = model(torch.zeros(1, 3, size, size))
    assert [tuple(f.shape) for f in feats] == [(1, 8 * 2**i, size // 2 ** (i + 2), size // 2 ** (i + 2)) for i in range(4)]
    assert model.out_channels == [8, 16, 32, 64] and model.out_strides == [4, 8, 16, 32]


def test_backward_and_in_chans():
    model = build_backbone("internimage_xl", img_size=64, in_chans=4, **TINY)
    feats = model(torch.randn(2, 4, 64, 64))
    sum(f.square().mean() for f in feats).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_memory_options_do_not_change_results():
    """``with_cp`` (activation checkpointing) and ``dcn_recompute`` give the same maps and gradients."""
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    grads = []
    for kw in ({}, {"with_cp": True}, {"dcn_recompute": True}):
        torch.manual_seed(3)
        model = build_backbone("internimage_xl", img_size=64, **TINY, **kw)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        feats = model(x.clone().requires_grad_())
        sum(f.square().mean() for f in feats).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# -- checkpoints -----------------------------------------------------------------------------

ENCODER_FILE = "last_internimage_xl_ss_is_rd_pretrn_model_encoder.pth"


def _small_source(seed=0) -> InternImage:
    torch.manual_seed(seed)
    m = build_backbone("internimage_xl", img_size=64, **TINY)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))
    return m


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_loads_release_layout_via_mtp_tag(tmp_path):
    """The MTP release: ``{'epoch', 'iteration', 'state_dict', 'optimizer', ...}``, unprefixed keys."""
    src = _small_source()
    torch.save({"epoch": 80, "iteration": 1, "state_dict": src.state_dict(), "optimizer": {}, "scheduler": {},
                "loss_pretrain": 0.1}, tmp_path / ENCODER_FILE)
    model = build_backbone("internimage_xl", img_size=64, pretrained="mtp", weights_dir=tmp_path, **TINY)
    assert _same_weights(src, model)
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert len(model.load_report.loaded) == len(src.state_dict())


@pytest.mark.parametrize("layout", ["model", "raw", "backbone", "module", "module_backbone", "whole_mtp_model"])
def test_prefixes_and_wrappers(tmp_path, layout):
    src = _small_source(1)
    sd = src.state_dict()
    if layout == "model":
        obj = {"model": sd}
    elif layout == "raw":
        obj = dict(sd)
    elif layout == "backbone":
        obj = {"state_dict": {f"backbone.{k}": v for k, v in sd.items()} | {"decode_head.conv_seg.weight": torch.zeros(2, 2)}}
    elif layout == "module":
        obj = {"state_dict": {f"module.{k}": v for k, v in sd.items()}}
    elif layout == "module_backbone":
        obj = {f"module.backbone.{k}": v for k, v in sd.items()}
    else:  # Multi-Task_Pretrain full model: encoder.* beside the decoders
        obj = {"state_dict": {f"encoder.{k}": v for k, v in sd.items()}
               | {"semsegdecoder.conv.weight": torch.zeros(3), "rotdetdecoder.x": torch.zeros(1)}}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model = build_backbone("internimage_xl", img_size=64, pretrained=str(path), **TINY)
    assert _same_weights(src, model)
    assert model.load_report.missing == []
    assert model.load_report.unexpected == []
    if layout == "backbone":  # a finetuned mm model: its head is set aside, not loaded
        assert model.load_report.ignored == ["decode_head.conv_seg.weight"]
    if layout == "whole_mtp_model":
        assert sorted(model.load_report.ignored) == ["rotdetdecoder.x", "semsegdecoder.conv.weight"]


def test_missing_keys_raise_unless_allowed(tmp_path):
    sd = _small_source(2).state_dict()
    del sd["levels.1.blocks.0.dcn.offset.weight"]
    sd["some.extra.key"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(WeightsError, match="levels.1.blocks.0.dcn.offset.weight"):
        build_backbone("internimage_xl", img_size=64, pretrained=str(path), **TINY)
    model = build_backbone("internimage_xl", img_size=64, pretrained=str(path), allow_missing=True, **TINY)
    assert model.load_report.missing == ["levels.1.blocks.0.dcn.offset.weight"]
    assert model.load_report.unexpected == ["some.extra.key"]


def test_wrong_architecture_and_absent_file(tmp_path):
    path = tmp_path / "xl_like.pth"
    torch.save(_small_source().state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit"):
        build_backbone("internimage_xl", img_size=64, pretrained=str(path), **{**TINY, "channels": 16, "groups": [2, 4, 8, 16]})
    with pytest.raises(WeightsError, match=ENCODER_FILE):
        build_backbone("internimage_xl", img_size=64, pretrained="mtp", weights_dir=tmp_path, **TINY)


# -- layer decay and weight decay -------------------------------------------------------------

class _Net(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(4, 2)


def _official_layer_id(var_name: str, num_max_layer: int, depths) -> int:
    """``get_num_layer_for_swin`` of the official ``custom_layer_decay_optimizer_constructor.py``
    (the branches that can match an InternImage encoder), transcribed as the oracle."""
    if var_name.startswith("encoder.patch_embed"):
        return 0
    if var_name.startswith("encoder.levels"):
        parts = var_name.split(".")
        stage = int(parts[2])
        if parts[3] not in ("downsample", "norm"):
            return int(parts[4]) + 1 + sum(depths[:stage])
        return 1 + sum(depths[: min(stage, 2) + 1])
    return num_max_layer - 1


def _groups(backbone, decay=0.94):
    net = _Net(backbone)
    groups = param_groups(net.named_parameters(), backbone=backbone, backbone_prefix="backbone.",
                          lr=2e-5, weight_decay=0.05, layer_decay=decay)
    return {n: g for g in groups for n in g["param_names"]}


def test_layer_decay_official_mode_is_uniform():
    """Default: as the official runs, where the decay never matched a name — scale 1 everywhere."""
    with torch.device("meta"):
        bb = build_backbone("internimage_xl", img_size=512)
    assert bb.layer_decay_mode == "official" and bb.num_layer_ids == 41
    by_name = _groups(bb)
    assert {g["lr_scale"] for g in by_name.values()} == {1.0}
    assert {g["lr"] for g in by_name.values()} == {2e-5}
    # what the official constructor computes for the names it actually saw (backbone.*)
    assert {_official_layer_id(n, 41, XL_DEPTHS) for n in by_name} == {40}


def test_layer_decay_intended_mode():
    with torch.device("meta"):
        bb = build_backbone("internimage_xl", img_size=512, layer_decay_mode="intended")
    by_name = _groups(bb)
    for name, g in by_name.items():
        if name.startswith("backbone."):
            expected = _official_layer_id("encoder." + name[len("backbone."):], 41, XL_DEPTHS)
        else:
            expected = 40
        assert g["layer_id"] == expected, name
        assert g["lr_scale"] == pytest.approx(0.94 ** (40 - expected)), name
    assert by_name["backbone.patch_embed.conv1.weight"]["lr_scale"] == pytest.approx(0.94**40)
    assert by_name["backbone.levels.0.blocks.0.dcn.offset.weight"]["layer_id"] == 1
    assert by_name["backbone.levels.0.downsample.conv.weight"]["layer_id"] == 6
    assert by_name["backbone.levels.2.blocks.23.mlp.fc2.weight"]["layer_id"] == 34
    assert by_name["backbone.levels.3.blocks.4.gamma2"]["lr_scale"] == pytest.approx(0.94)
    assert by_name["head.weight"]["lr_scale"] == 1.0


def test_no_weight_decay_rule():
    bb = build_backbone("internimage_xl", img_size=64, **TINY)
    by_name = _groups(bb)
    wd = {n: g["weight_decay"] for n, g in by_name.items()}
    for n in ("backbone.levels.0.blocks.0.gamma1", "backbone.levels.0.blocks.0.dcn.offset.bias",
              "backbone.levels.0.blocks.0.norm1.0.weight", "backbone.levels.1.blocks.0.dcn.dw_conv.1.1.weight",
              "backbone.patch_embed.norm2.1.weight", "head.bias"):
        assert wd[n] == 0.0, n
    for n in ("backbone.levels.0.blocks.0.dcn.offset.weight", "backbone.levels.0.blocks.0.mlp.fc1.weight",
              "backbone.levels.0.downsample.conv.weight", "backbone.patch_embed.conv1.weight", "head.weight"):
        assert wd[n] == 0.05, n
    fake = nn.Parameter(torch.zeros(3, 3))
    assert bb.no_weight_decay_param("levels.0.downsample.norm.whatever", fake)
    assert bb.no_weight_decay_param("x.relative_position_bias_table", fake)
    assert bb.no_weight_decay_param("x.sampling_offsets.weight", fake)
    assert not bb.no_weight_decay_param("x.weight", fake)
