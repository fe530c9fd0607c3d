"""Your own encoder in one line: ``backbone=custom backbone.target=<import path>``. The encoders are defined
in this test module (the CLI runs import it from tests/ on PYTHONPATH); every contract violation is one
clear error, before any data is read."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from conftest import REPO, compose_config, run_rsbench
from rsbench.errors import ConfigError, WeightsError
from rsbench.models import build_backbone
from rsbench.models.backbones.custom import CustomBackbone, check_custom_backbone

HERE = "test_custom_backbone"
ENV = {"PYTHONPATH": str(REPO / "tests")}


class TinyEncoder(nn.Module):
    """A conv pyramid at strides 4, 8, 16, 32 (a tuple of maps, which rsbench turns into a list)."""

    def __init__(self, in_chans: int = 3, width: int = 4) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Conv2d(in_chans, chans[0], 4, 4)
        self.stages = nn.ModuleList(nn.Conv2d(a, b, 3, 2, 1) for a, b in zip(chans, chans[1:]))
        self.out_channels, self.out_strides = chans, [4, 8, 16, 32]

    def forward(self, x):
        x = self.stem(x)
        out = [x]
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return tuple(out)


class LayeredEncoder(TinyEncoder):
    """With layer ids for layer-wise LR decay: stem 0, stage i → i + 1."""

    num_layer_ids = 5

    def layer_id(self, name: str) -> int:
        return 0 if name.startswith("stem") else int(name.split(".")[1]) + 1


def make_tiny(width: int = 4, img_size: int | None = None) -> nn.Module:
    """A function returning the encoder (it takes img_size, so rsbench passes it)."""
    assert img_size is not None
    return TinyEncoder(width=width)


class NoStrides(TinyEncoder):
    def __init__(self) -> None:
        super().__init__()
        del self.out_strides


class ThreeMaps(TinyEncoder):
    def forward(self, x):
        return super().forward(x)[:3]


class WrongWidth(TinyEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.out_channels = [4, 8, 16, 33]


class OneTensor(TinyEncoder):
    def forward(self, x):
        return super().forward(x)[-1]


class OddStrides(TinyEncoder):
    """Maps at 4, 8, 16, 32 but two widths and strides that are no pyramid: fine for cls, not for seg."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = self.stages[:1]
        self.out_channels, self.out_strides = [4, 8], [4, 8]


def _build(target: str, **kw) -> nn.Module:
    return build_backbone("custom", img_size=32, target=f"{HERE}.{target}", **kw)


def test_class_and_function_targets_meet_the_contract():
    m = _build("TinyEncoder", width=2)
    assert isinstance(m, CustomBackbone) and m.out_channels == [2, 4, 8, 16] and m.out_strides == [4, 8, 16, 32]
    feats = m(torch.zeros(2, 3, 32, 32))
    assert isinstance(feats, list) and [tuple(f.shape) for f in feats] == [(2, 2, 8, 8), (2, 4, 4, 4), (2, 8, 2, 2),
                                                                             (2, 16, 1, 1)]
    f = build_backbone("custom", img_size=32, target=f"{HERE}:make_tiny", width=2, features="pyramid")
    assert f.out_channels == [2, 4, 8, 16]  # already a pyramid: no neck


@pytest.mark.parametrize("target, kw, needle", [
    ("not_a_module_xyz.Enc", {}, "cannot import module 'not_a_module_xyz'"),
    (f"{HERE}.Missing", {}, f"{HERE} has no attribute 'Missing'"),
    (f"{HERE}.HERE", {}, "is a str, not a class or a function"),
    (f"{HERE}.TinyEncoder", {"depth": 3}, "unexpected keyword argument 'depth'"),
    (f"{HERE}.NoStrides", {}, "has no out_strides"),
    (f"{HERE}.ThreeMaps", {}, "forward returned 3 maps, but out_channels [4, 8, 16, 32]"),
    (f"{HERE}.WrongWidth", {}, "map 3 is (1, 32, 1, 1), expected (1, 33, 1, 1)"),
    (f"{HERE}.OneTensor", {}, "forward returned a Tensor; expected a list"),
])
def test_each_contract_violation_names_what_is_missing(target, kw, needle):
    with pytest.raises(ConfigError) as e:
        build_backbone("custom", img_size=32, target=target, **kw)
    assert needle in str(e.value) and f"backbone.target={target!r}" in str(e.value)


def test_pyramid_tasks_need_pyramid_strides():
    _build("OddStrides")  # maps: fine
    with pytest.raises(ConfigError, match=r"features='pyramid' needs maps at strides \[4, 8, 16, 32\]"):
        _build("OddStrides", features="pyramid")


def test_weights_load_from_the_encoders_own_file_or_a_whole_models(tmp_path):
    src = TinyEncoder(width=2)
    own, whole = tmp_path / "own.pth", tmp_path / "whole.pth"
    torch.save(src.state_dict(), own)
    torch.save({"state_dict": {**{f"backbone.{k}": v for k, v in src.state_dict().items()}, "head.w": torch.ones(1)}},
               whole)
    for path in (own, whole):
        m = _build("TinyEncoder", width=2, pretrained=path)
        assert torch.equal(m.encoder.stem.weight, src.stem.weight)
        assert m.load_report.missing == [] and m.load_report.unexpected == []
    assert _build("TinyEncoder", width=2, pretrained=whole).load_report.ignored == ["head.w"]
    torch.save(TinyEncoder(width=3).state_dict(), own)
    with pytest.raises(WeightsError, match="do not fit the model"):
        _build("TinyEncoder", width=2, pretrained=own)


def test_layer_ids_of_the_encoder_give_layer_decay():
    from rsbench.models.layer_decay import param_groups

    m = _build("LayeredEncoder")
    assert m.num_layer_ids == 5 and m.layer_id("encoder.stages.2.weight") == 3
    groups = param_groups(nn.ModuleDict({"backbone": m}).named_parameters(), backbone=m, backbone_prefix="backbone.",
                          lr=1.0, weight_decay=0.05, layer_decay=0.5)
    scale = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    assert scale["backbone.encoder.stem.weight"] == 0.5 ** 4 and scale["backbone.encoder.stages.2.weight"] == 0.5
    assert _build("TinyEncoder").num_layer_ids == 1  # no ids: one uniform rate


def test_config_names_the_encoder_and_checks_before_the_data(tmp_path):
    cfg = compose_config(["backbone=custom", f"backbone.target={HERE}.TinyEncoder", "dataset=eurosat"])
    assert cfg["backbone"]["name"] == "TinyEncoder" and cfg["backbone"]["pretrain"] == "None"
    assert cfg["optim"]["lr"] == 6.0e-5 and cfg["optim"]["layer_decay"] == 0.9  # MTP's rates
    assert cfg["task"]["module"]["backbone"]["kwargs"] == {"target": f"{HERE}.TinyEncoder"}
    check_custom_backbone(OmegaConf.create(cfg))
    for overrides, needle in [
        ([], "backbone=custom needs the encoder's import path"),
        ([f"backbone.target={HERE}.TinyEncoder", "backbone.name=resnet18"], "is the name of a built-in backbone"),
        ([f"backbone.target={HERE}.TinyEncoder", f"backbone.pretrained={tmp_path}/none.pth"], "no such file"),
    ]:
        with pytest.raises((ConfigError, WeightsError), match=needle):
            check_custom_backbone(OmegaConf.create(compose_config(["backbone=custom", *overrides])))


COMMON = ["trainer=cpu", "trainer.enable_progress_bar=false", "data.num_workers=0", "logger=none",
          "dataset.sample=true", "data.batch_size=2", "callbacks.plots.num=1", "backbone=custom",
          f"backbone.target={HERE}.TinyEncoder", "+backbone.kwargs.width=4"]
TASKS = {
    "cls": ["dataset=eurosat", "trainer.max_epochs=1", "sched.warmup_epochs=0", "data.img_size=32"],
    "seg": ["dataset=loveda", "trainer.max_steps=2", "data.img_size=64", "+dataset.sample_kwargs.size=64",
            "task.module.head.channels=16", "trainer.val_check_interval=2"],
    "cd": ["dataset=levir", "trainer.max_epochs=1", "sched.warmup_epochs=0", "data.img_size=64",
           "dataset.kwargs.tile=64", "task.module.decoder_channels=[16,16,8,8]"],
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_custom_encoder_runs_every_dense_and_scene_task(tmp_path, task):
    weights = tmp_path / "enc.pth"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in TinyEncoder(width=4).state_dict().items()}}, weights)
    run_rsbench([*TASKS[task], *COMMON, f"backbone.pretrained={weights}"], tmp_path, env=ENV)
    run = next((tmp_path / "results/runs" / task).glob("*/TinyEncoder/default-s0"))
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["backbone"] == "TinyEncoder" and rec["pretrain"] == "enc.pth"
    assert 0.0 <= rec["metrics"][rec["metric"]] <= 100.0
    assert "missing 0, unexpected 0" in (run / "run.log").read_text()
    assert "| TinyEncoder | enc.pth |" in (tmp_path / "results/leaderboard.md").read_text()


@pytest.mark.slow
def test_contract_violation_stops_the_run_before_the_data(tmp_path):
    """No data folder at all: the backbone's error comes first, exit 2, no training."""
    base = ["dataset=eurosat", "trainer=cpu", "logger=none", "backbone=custom"]
    proc = run_rsbench([*base, f"backbone.target={HERE}.ThreeMaps"], tmp_path, check=False, env=ENV)
    assert proc.returncode == 2, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "forward returned 3 maps" in out and "Traceback" not in out and "Trainer" not in out
    proc = run_rsbench([*base, f"backbone.target={HERE}.TinyEncoder", f"backbone.pretrained={tmp_path}/nope.pth"],
                       tmp_path, check=False, env=ENV)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and f"backbone.pretrained='{tmp_path}/nope.pth'" in out and "no such file" in out
    assert "eurosat" not in out.split("error:")[-1]  # the data (absent) was never looked at
