"""Layer-wise LR decay groups (the official ViT rule) and the warm-up/cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from rsbench.models.layer_decay import param_groups
from rsbench.tasks.schedule import Schedule


class TinyViTLike(nn.Module):
    """Names as the official ViT: pos_embed, patch_embed, blocks.i, norm."""

    def __init__(self, depth=3):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.patch_embed = nn.Conv2d(3, 8, 2)
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(depth))
        self.norm = nn.LayerNorm(8)
        self.num_layer_ids = depth + 2

    def layer_id(self, name):
        if name.startswith(("pos_embed", "patch_embed", "cls_token")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layer_ids - 1


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = TinyViTLike()
        self.head = nn.Linear(8, 2)


def _by_name(groups):
    return {n: g for g in groups for n in g["param_names"]}


def test_official_vit_layer_decay_scales():
    m = Model()
    g = _by_name(param_groups(m.named_parameters(), backbone=m.backbone, backbone_prefix="backbone.",
                              lr=1.0, weight_decay=0.05, layer_decay=0.9))
    L = 5  # depth 3 + 2
    assert g["backbone.pos_embed"]["lr"] == pytest.approx(0.9 ** (L - 1))
    assert g["backbone.patch_embed.weight"]["lr"] == pytest.approx(0.9 ** 4)
    assert g["backbone.blocks.0.weight"]["lr"] == pytest.approx(0.9 ** 3)
    assert g["backbone.blocks.2.weight"]["lr"] == pytest.approx(0.9 ** 1)
    assert g["backbone.norm.weight"]["lr"] == pytest.approx(1.0)
    assert g["head.weight"]["lr"] == pytest.approx(1.0)


def test_no_weight_decay_for_1d_bias_and_pos_embed():
    m = Model()
    g = _by_name(param_groups(m.named_parameters(), backbone=m.backbone, backbone_prefix="backbone.",
                              lr=1.0, weight_decay=0.05, layer_decay=0.9))
    assert g["backbone.pos_embed"]["weight_decay"] == 0.0  # 3-D but named pos_embed
    assert g["backbone.blocks.1.bias"]["weight_decay"] == 0.0
    assert g["backbone.norm.weight"]["weight_decay"] == 0.0
    assert g["backbone.blocks.1.weight"]["weight_decay"] == 0.05
    assert g["head.weight"]["weight_decay"] == 0.05


def test_backbone_without_layer_ids_gets_uniform_lr():
    m = Model()
    m.backbone = nn.Linear(3, 3)
    groups = param_groups(m.named_parameters(), backbone=m.backbone, backbone_prefix="backbone.",
                          lr=2e-5, weight_decay=0.05, layer_decay=0.94)
    assert {g["lr"] for g in groups} == {2e-5}


def test_every_parameter_in_exactly_one_group():
    m = Model()
    groups = param_groups(m.named_parameters(), backbone=m.backbone, backbone_prefix="backbone.",
                          lr=1.0, weight_decay=0.05, layer_decay=0.9)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())


def test_warmup_then_cosine_per_epoch():
    s = Schedule(total_steps=100, steps_per_epoch=10, name="cosine", warmup_steps=20,
                 warmup_start_factor=1e-6, cosine_by_epoch=True)
    assert s(0) == pytest.approx(1e-6)
    assert s(10) == pytest.approx(1e-6 + (1 - 1e-6) * 0.5)
    assert s(20) == pytest.approx(1.0)
    assert s(25) == s(29)  # constant within an epoch
    assert s(30) == pytest.approx(0.5 * (1 + math.cos(math.pi * 1 / 8)))
    assert s(99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_cosine_per_iteration_and_multistep():
    s = Schedule(total_steps=1000, steps_per_epoch=1000, name="cosine", warmup_steps=0)
    assert s(500) == pytest.approx(0.5)
    assert s(1000) == pytest.approx(0.0)
    m = Schedule(total_steps=120, steps_per_epoch=10, name="multistep", milestones=[8, 11], gamma=0.1)
    assert m(79) == 1.0 and m(80) == pytest.approx(0.1) and m(115) == pytest.approx(0.01)
