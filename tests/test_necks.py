"""The backbone contract around the models: ``features`` (raw maps or the 4-32 pyramid), the fpn neck on
any single-stride backbone, the one checkpoint loader with timm files, registry discovery, and the heads'
conv block."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn as nn

from rsbench.errors import ConfigError
from rsbench.models import BACKBONES, build_backbone
from rsbench.models.layer_decay import param_groups
from rsbench.models.necks import BackboneWithNeck, SimpleFeaturePyramid, as_pyramid

TIMM_VIT = "vit_tiny_patch16_224"


# -- the neck -----------------------------------------------------------------------------------

def test_simple_feature_pyramid_from_stride_16_is_the_official_fpn():
    neck = SimpleFeaturePyramid(8, 16)
    assert set(neck.state_dict()) == {
        "fpn1.0.weight", "fpn1.0.bias", "fpn1.1.ln.weight", "fpn1.1.ln.bias", "fpn1.3.weight", "fpn1.3.bias",
        "fpn2.0.weight", "fpn2.0.bias",
    }
    assert [type(m).__name__ for m in neck.fpn1] == ["ConvTranspose2d", "Norm2d", "GELU", "ConvTranspose2d"]
    assert isinstance(neck.fpn3, nn.Identity) and neck.fpn4.kernel_size == 2 and neck.fpn4.stride == 2
    maps = [torch.randn(1, 8, 4, 4) for _ in range(4)]
    assert [o.shape[-1] for o in neck(maps)] == [16, 8, 4, 2] and neck.out_strides == [4, 8, 16, 32]


def test_simple_feature_pyramid_other_strides_and_one_map():
    neck = SimpleFeaturePyramid(4, 8, num_inputs=1)  # ViTDet: the last map feeds every level
    assert isinstance(neck.fpn2, nn.Identity) and neck.fpn4.kernel_size == 4
    assert [o.shape[-1] for o in neck([torch.randn(1, 4, 8, 8)])] == [16, 8, 4, 2]
    with pytest.raises(ConfigError, match="1 map or one per level"):
        SimpleFeaturePyramid(4, 16, num_inputs=3)
    with pytest.raises(ConfigError, match="power-of-2"):
        SimpleFeaturePyramid(4, 12)


class _Toy(nn.Module):
    """A single-stride backbone with its own top-level parameter, buffer and BatchNorm child."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 16, 16)
        self.bn = nn.BatchNorm2d(8)
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("shift", torch.zeros(1))
        self.out_channels, self.out_strides, self.num_layer_ids = [8] * 4, [16] * 4, 3

    def forward(self, x):
        y = self.bn(self.proj(x)) * self.scale + self.shift
        return [y * (i + 1) for i in range(4)]

    def layer_id(self, name):
        return 0 if name.startswith("proj") else 1


def test_backbone_with_neck_shares_one_state():
    torch.manual_seed(0)
    m = as_pyramid(_Toy())
    assert isinstance(m, BackboneWithNeck) and m.out_strides == [4, 8, 16, 32] and m.out_channels == [8] * 4
    assert list(m.state_dict())[:2] == ["scale", "shift"] and "proj.weight" in m.state_dict()
    assert "fpn1.0.weight" in m.state_dict() and not any(k.startswith(("body.", "neck.")) for k in m.state_dict())
    x = torch.randn(2, 3, 64, 64)
    m.eval()
    assert not m.body.training and not m.neck.training
    ref = [o.detach() for o in m(x)]
    d = m.to(torch.float64)  # buffers and parameters are replaced in the dicts all three share
    assert m.body.shift.dtype == torch.float64 and m.body.proj.weight.dtype == torch.float64
    for a, b in zip(d(x.double()), ref):
        torch.testing.assert_close(a.float(), b, rtol=1e-4, atol=1e-5)
    m.float()
    twin = copy.deepcopy(m)
    with torch.no_grad():
        twin.body.scale.fill_(3.0)
    assert m.scale.item() == 1.0 and twin.scale.item() == 3.0
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(twin)
    assert isinstance(synced.body.bn, nn.SyncBatchNorm)  # the body computes with the converted module
    assert m.train().body.training
    assert (m.layer_id("proj.weight"), m.layer_id("bn.weight"), m.layer_id("fpn1.0.weight")) == (0, 1, 2)


def test_pyramid_of_timm_nets():
    for name, strides in (("resnet18", [4, 8, 16, 32]), ("convnext_tiny", [4, 8, 16, 32])):
        with torch.device("meta"):
            bb = build_backbone(name, img_size=64, features="pyramid")
        assert not isinstance(bb, BackboneWithNeck) and bb.out_strides == strides
    with pytest.raises(ConfigError, match=r"strides \[8, 16\]"):
        build_backbone("resnet18", img_size=64, features="pyramid", out_indices=[2, 3])
    vit = build_backbone(TIMM_VIT, img_size=64, features="pyramid").eval()
    assert isinstance(vit, BackboneWithNeck) and vit.out_channels == [192] * 4
    with torch.no_grad():
        assert [o.shape[-1] for o in vit(torch.randn(1, 3, 64, 64))] == [16, 8, 4, 2]
    raw = build_backbone(TIMM_VIT, img_size=64)
    assert raw.out_strides == [16] * 4 and not isinstance(raw, BackboneWithNeck)


def test_timm_vit_pyramid_layer_decay_puts_the_neck_last():
    with torch.device("meta"):
        vit = build_backbone(TIMM_VIT, img_size=64, features="pyramid")
    net = nn.ModuleDict({"backbone": vit, "head": nn.Linear(2, 2)})
    groups = param_groups(net.named_parameters(), backbone=vit, backbone_prefix="backbone.", lr=1.0,
                          weight_decay=0.05, layer_decay=0.5)
    by_name = {n: g for g in groups for n in g["param_names"]}
    last = vit.num_layer_ids - 1
    assert by_name["backbone.fpn1.0.weight"]["layer_id"] == last and by_name["backbone.fpn1.0.weight"]["lr_scale"] == 1
    assert by_name["backbone.model.patch_embed.proj.weight"]["layer_id"] == 0
    assert by_name["backbone.fpn1.1.ln.weight"]["weight_decay"] == 0.0


# -- one loader, timm files ------------------------------------------------------------------

def test_timm_checkpoint_head_ignored_and_pos_embed_resized(tmp_path):
    src = timm.create_model(TIMM_VIT)  # 224 px, with its 1000-class head
    path = tmp_path / "vit_tiny.pth"
    torch.save(src.state_dict(), path)
    m = build_backbone(TIMM_VIT, img_size=64, features="pyramid", pretrained=str(path))
    rep = m.load_report
    assert rep.unexpected == [] and set(rep.ignored) == {"head.weight", "head.bias"}
    assert set(rep.missing) == {k for k in m.state_dict() if k.startswith("fpn")}  # the new neck: reported
    assert m.model.pos_embed.shape[1] == 1 + 4 * 4  # cls token + the 64 px grid, resized by timm's own filter
    torch.testing.assert_close(m.model.blocks[3].mlp.fc1.weight, src.blocks[3].mlp.fc1.weight)


def test_torchvision_layout_resnet_loads(tmp_path):
    src = timm.create_model("resnet18")
    torch.save(src.state_dict(), tmp_path / "resnet18.pth")  # torchvision and timm share these names
    m = build_backbone("resnet18", img_size=32, pretrained=str(tmp_path / "resnet18.pth"))
    assert m.load_report.missing == [] and sorted(m.load_report.ignored) == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(m.model.layer2[0].conv1.weight, src.layer2[0].conv1.weight)


# -- registry --------------------------------------------------------------------------------

def test_backbone_modules_are_discovered_and_builders_are_plain_functions():
    from rsbench.models.backbones import internimage, vit_rvsa

    assert {"vitb_rvsa", "vitl_rvsa", "internimage_xl"} <= set(BACKBONES.names())
    assert BACKBONES.get("vitb_rvsa") is vit_rvsa.vitb_rvsa and vit_rvsa.vitl_rvsa.__name__ == "vitl_rvsa"
    assert BACKBONES.get("internimage_xl") is internimage.internimage_xl
    with pytest.raises(ConfigError, match="features"):
        build_backbone("resnet18", img_size=32, features="seg")


# -- the heads' conv block -------------------------------------------------------------------

def test_conv_block_keeps_relu_under_sync_bn():
    """Why the heads do not use timm's ConvNormAct (rsbench/models/heads/blocks.py)."""
    from timm.layers import ConvNormAct

    from rsbench.models.heads.blocks import ConvBNReLU

    x = torch.randn(2, 4, 8, 8)
    timm_block = nn.SyncBatchNorm.convert_sync_batchnorm(ConvNormAct(4, 4, 3, padding=1)).eval()
    assert timm_block(x).min() < 0  # Lightning's sync_batchnorm drops the ReLU inside BatchNormAct2d
    ours = nn.SyncBatchNorm.convert_sync_batchnorm(ConvBNReLU(4, 4)).eval()
    assert isinstance(ours.bn, nn.SyncBatchNorm) and ours(x).min() >= 0
    assert list(ConvBNReLU(4, 4).state_dict())[:2] == ["conv.weight", "bn.weight"]  # mmcv ConvModule's names
