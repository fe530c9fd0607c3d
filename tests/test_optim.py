"""Layer-wise LR decay groups (the official ViT rule) and the schedule against MMEngine's formulas."""

from __future__ import annotations


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


@pytest.mark.parametrize("epochs,spe,warmup_epochs", [(10, 7, 2), (100, 254, 5), (6, 1, 5)])
def test_per_epoch_schedule_equals_mmengine(epochs, spe, warmup_epochs):
    """Against MMEngine's chained LinearLR(convert_to_iter_based) + epoch CosineAnnealingLR
    (tests/test_fidelity_schedule.py::mmengine_lrs), at every iteration."""
    from test_fidelity_schedule import mmengine_lrs

    s = Schedule.from_config({"name": "cosine", "warmup_epochs": warmup_epochs, "warmup_start_factor": 1e-6,
                              "cosine_by_epoch": True}, total_steps=epochs * spe, steps_per_epoch=spe)
    ref = [lr for (lr,) in mmengine_lrs([1.0], iters_per_epoch=spe, epochs=epochs, warmup_epochs=warmup_epochs)]
    assert [s(i) for i in range(epochs * spe)] == pytest.approx(ref, rel=1e-10, abs=1e-15)


def test_warmup_reaches_the_full_rate_one_step_before_its_end():
    """MMEngine LinearLR: total_iters = end - begin - 1; hand values for W = 5 from 0.2."""
    s = Schedule(total_steps=10, steps_per_epoch=10, name="constant", warmup_steps=5, warmup_start_factor=0.2)
    assert [s(i) for i in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    # epochs → iterations truncated as MMEngine's build_iter_from_epoch: int(end * epoch_length)
    assert Schedule.from_config({"warmup_epochs": 2.5}, total_steps=30, steps_per_epoch=3).warmup_steps == 7
    assert Schedule.from_config({"warmup_epochs": 5, "warmup_steps": 4}, total_steps=30, steps_per_epoch=3).warmup_steps == 4


def test_cosine_per_iteration_and_multistep():
    s = Schedule(total_steps=1000, steps_per_epoch=1000, name="cosine", warmup_steps=0)
    assert s(500) == pytest.approx(0.5)
    assert s(1000) == pytest.approx(0.0)
    m = Schedule(total_steps=120, steps_per_epoch=10, name="multistep", milestones=[8, 11], gamma=0.1)
    assert m(79) == 1.0 and m(80) == pytest.approx(0.1) and m(115) == pytest.approx(0.01)


def test_weight_decay_of_vit_rvsa_pyramid_with_upernet_follows_the_official_rule():
    """Every parameter of a seg model (ViT-RVSA fpn pyramid + UperNet) by the official rule:
    ``len(shape) == 1 or name.endswith('.bias') or 'pos_embed' in name`` → no decay."""
    from rsbench.tasks.segmentation import SegmentationTask

    task = SegmentationTask(
        backbone={"name": "vitb_rvsa", "pretrained": None, "features": "pyramid",
                  "kwargs": {"embed_dim": 32, "depth": 4, "num_heads": 2, "out_indices": [0, 1, 2, 3], "interval": 2}},
        num_classes=3, optim={"lr": 1.0, "weight_decay": 0.05, "layer_decay": 0.9}, sched={}, img_size=112,
        head={"channels": 16})
    groups = param_groups(task.named_parameters(), backbone=task.backbone, backbone_prefix="backbone.",
                          lr=1.0, weight_decay=0.05, layer_decay=0.9)
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    params = dict(task.named_parameters())
    assert set(wd) == set(params)
    for n, p in params.items():
        official = 0.0 if (len(p.shape) == 1 or n.endswith(".bias") or "pos_embed" in n) else 0.05
        assert wd[n] == official, n
    bn = [n for n, m in task.named_modules() if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.LayerNorm))]
    assert bn and all(wd[f"{m}.weight"] == 0.0 and wd[f"{m}.bias"] == 0.0 for m in bn)
