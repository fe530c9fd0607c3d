"""Protocols beyond full finetuning (README "Protocols"): a frozen encoder (``finetune=frozen``) and label
fractions (``data.label_fraction``): what trains, what the optimiser holds, the seeded subsets and their split
files, the run folders, and the leaderboard rows (apart, never beside the paper's value)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY, compose_config, run_rsbench
from rsbench.data.fractions import class_quotas, label_subset, subset_size

TINY_VIT = {"embed_dim": 32, "depth": 4, "num_heads": 2, "out_indices": [0, 1, 2, 3], "interval": 2}
OPTIM = {"lr": 1e-3, "weight_decay": 0.05, "layer_decay": 0.9}
FROZEN = {"name": "frozen", "freeze_encoder": True, "train_neck": True}


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# -- frozen encoder through the CLI -----------------------------------------------------------------

@pytest.mark.slow
def test_frozen_linear_probe_cls_keeps_the_encoder_bit_identical(tmp_path):
    """cls, ResNet-18 (BatchNorm) from a weights file, frozen, on half the labels: every backbone tensor
    (BN running statistics too) is bit-identical after training, the linear head trained, the optimiser
    held the head alone; the folder, the record and the split file say so."""
    from rsbench.models import build_backbone

    torch.manual_seed(1)
    enc = build_backbone("resnet18", img_size=32, features="maps")
    start = {k: v.clone() for k, v in enc.state_dict().items()}
    torch.save(start, tmp_path / "enc.pth")
    run_rsbench(["dataset=eurosat", "backbone=resnet18", f"backbone.pretrained={tmp_path / 'enc.pth'}",
                 "dataset.sample=true", *TINY, "optim.lr=1e-2", "finetune=frozen", "data.label_fraction=0.5",
                 "callbacks.checkpoint.keep=last", "callbacks.plots.num=0"], tmp_path)
    run = tmp_path / "results/runs/cls/eurosat/resnet18/default-frozen-frac0.5-s0"
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["finetune"] == "frozen" and rec["label_fraction"] == 0.5
    ckpt = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    sd = ckpt["state_dict"]
    assert {k.removeprefix("backbone.") for k in sd if k.startswith("backbone.")} == set(start)
    changed = [k for k, v in start.items() if not torch.equal(sd[f"backbone.{k}"], v)]
    assert not changed  # weights and BatchNorm buffers: no update, no running-statistics drift
    assert sd["head.bias"].abs().sum() > 0  # zero-initialised: it trained
    names = [n for g in ckpt["optimizer_states"][0]["param_groups"] for n in g["param_names"]]
    assert sorted(names) == ["head.bias", "head.weight"]
    assert rec["parameters"]["trainable"] == sd["head.weight"].numel() + sd["head.bias"].numel()
    sub = rec["train_subset"]
    assert sub["size"] == subset_size(sub["of"], 0.5) and sub["stratified"] and not sub["reused"]
    listed = (run / "splits/train-frac0.5-seed0.txt").read_text().splitlines()
    assert listed[0].startswith("# rsbench label fraction 0.5") and len(listed) - 1 == sub["size"]


@pytest.mark.slow
def test_frozen_encoder_seg_trains_neck_and_decoder_only(tmp_path):
    """seg, a tiny ViT-RVSA (fpn1..4 pyramid neck) from a weights file, frozen: the encoder's tensors are
    bit-identical, the neck and UperNet trained; the folder is its own beside a full run's."""
    from rsbench.models import build_backbone

    torch.manual_seed(1)
    enc = build_backbone("vitb_rvsa", img_size=112, features="pyramid", **TINY_VIT)
    start = {k: v.clone() for k, v in enc.state_dict().items()}
    torch.save({"state_dict": start}, tmp_path / "vit.pth")
    kw = [f"+backbone.kwargs.{k}={v}".replace(" ", "") for k, v in TINY_VIT.items()]
    run_rsbench(["dataset=loveda", "backbone=vitb_rvsa", f"backbone.pretrained={tmp_path / 'vit.pth'}", *kw,
                 "dataset.sample=true", "+dataset.sample_kwargs.size=128", "trainer=cpu", "trainer.max_steps=2",
                 "trainer.enable_progress_bar=false", "data.num_workers=0", "logger=none", "data.batch_size=2",
                 "data.img_size=112", "task.module.head.channels=16", "trainer.val_check_interval=2",
                 "sched.warmup_steps=0", "optim.lr=1e-2", "callbacks.plots.num=0", "finetune=frozen",
                 "callbacks.checkpoint.every_n_train_steps=2"], tmp_path)
    run = tmp_path / "results/runs/seg/loveda/vitb_rvsa/default-frozen-s0"
    sd = _state(run / "checkpoints/model.pt")
    neck = {k for k in start if k.startswith("fpn")}
    assert neck and len(neck) < len(start)
    assert all(torch.equal(sd[f"backbone.{k}"], v) for k, v in start.items() if k not in neck)
    assert any(not torch.equal(sd[f"backbone.{k}"], start[k]) for k in neck)  # train_neck: true
    assert sd["head.conv_seg.bias"].abs().sum() > 0
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["finetune"] == "frozen" and rec["train_subset"] is None


# -- frozen encoder in the task: optimiser and modes ------------------------------------------------

def _optimizer(task) -> torch.optim.Optimizer:
    task._trainer = SimpleNamespace(estimated_stepping_batches=10, train_dataloader=object(), num_training_batches=5,
                                    accumulate_grad_batches=1)
    return task.configure_optimizers()["optimizer"]


def _check_frozen(task) -> None:
    opt = _optimizer(task)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    encoder = {id(p) for n, p in task.backbone.named_parameters() if not n.startswith("fpn")}
    assert held and not held & encoder
    assert held == {id(p) for p in task.parameters() if p.requires_grad}
    task.train()
    assert task.training and not any(m.training for n, m in task.backbone.named_modules() if not n.startswith("fpn"))


def test_frozen_detector_optimiser_holds_no_backbone_parameter():
    """det: the backbone is stored inside the detector (adopt_backbone); the FPN and heads train, it does not."""
    from rsbench.tasks.detection import DetectionTask

    task = DetectionTask(backbone={"name": "resnet18", "pretrained": None, "features": "pyramid"}, optim=OPTIM,
                         sched={"name": "constant", "warmup_steps": 0}, img_size=64, num_classes=3,
                         class_names=["a", "b", "c"], detector={"name": "faster_rcnn"}, finetune=FROZEN)
    _check_frozen(task)
    assert task.detector.backbone.fpn.training and task.detector.roi_heads.training


def test_frozen_vit_cls_and_full_default():
    from rsbench.tasks.classification import ClassificationTask

    args = dict(backbone={"name": "vitb_rvsa", "pretrained": None, "features": "maps", "kwargs": TINY_VIT},
                optim=OPTIM, sched={"name": "constant", "warmup_steps": 0}, img_size=112, num_classes=3)
    frozen = ClassificationTask(**args, finetune=FROZEN)
    _check_frozen(frozen)
    full = ClassificationTask(**args)  # no finetune: full finetuning, every parameter in the optimiser
    assert {id(p) for g in _optimizer(full).param_groups for p in g["params"]} == {id(p) for p in full.parameters()}


# -- label fractions ----------------------------------------------------------------------------------

class _Scenes:
    """A dataset whose labels are known without reading a sample (``targets``), unbalanced."""

    def __init__(self, counts):
        self.targets = [c for c, n in enumerate(counts) for _ in range(n)]

    def __len__(self):
        return len(self.targets)


class _Tiles:
    def __len__(self):
        return 250


def test_stratified_subset_is_seeded_sized_and_nested():
    ds = _Scenes([100, 50, 30, 7, 3])
    for f in (0.01, 0.1, 0.5):
        idx, stratified = label_subset(ds, f, seed=0)
        assert stratified and len(idx) == subset_size(190, f) == max(1, round(f * 190)) and idx == sorted(set(idx))
        assert idx == label_subset(ds, f, seed=0)[0] != label_subset(ds, f, seed=1)[0]
    got = Counter(ds.targets[i] for i in label_subset(ds, 0.1, seed=0)[0])
    assert [got[c] for c in range(5)] == class_quotas([100, 50, 30, 7, 3], 19) == [9, 5, 3, 1, 1]
    assert set(label_subset(ds, 0.1, 3)[0]) <= set(label_subset(ds, 0.5, 3)[0])  # one permutation per class
    assert class_quotas([100, 1], 2) == [1, 1]  # every class kept when the size allows
    plain, stratified = label_subset(_Tiles(), 0.1, seed=0)
    assert not stratified and len(plain) == 25 and plain == label_subset(_Tiles(), 0.1, seed=0)[0]


def _dm(root: Path, subset_dir: Path | None, fraction: float, seed: int = 0):
    from rsbench.data.datamodule import RSDataModule

    dm = RSDataModule(dataset="eurosat", root=root, splits={"train": "train", "val": "val"}, batch_size=4,
                      num_workers=0, label_fraction=fraction, fraction_seed=seed, subset_dir=subset_dir,
                      full_check_max_samples=0)
    dm.check()
    return dm


def test_datamodule_saves_and_reuses_the_split_file(tmp_path, samples):
    root = samples("eurosat")
    whole = _dm(root, None, 1.0)
    a, b = _dm(root, tmp_path / "a", 0.25), _dm(root, tmp_path / "b", 0.25)
    name = "train-frac0.25-seed0.txt"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()  # byte-identical
    n = len(whole.datasets["train"])
    assert len(a.datasets["train"]) == a.train_subset["size"] == subset_size(n, 0.25)
    assert len(a.datasets["val"]) == len(whole.datasets["val"]) and whole.train_subset is None  # val untouched
    counts = Counter(whole.raw["train"].targets)
    assert Counter(whole.raw["train"].targets[i] for i in a.datasets["train"].base.indices) == \
        dict(zip(sorted(counts), class_quotas([counts[c] for c in sorted(counts)], a.train_subset["size"])))
    assert _dm(root, tmp_path / "a", 0.25, seed=1).train_subset["file"].endswith("train-frac0.25-seed1.txt")
    # a run folder that holds the file trains on what it lists (a resumed run), and says so
    lines = (tmp_path / "a" / name).read_text().splitlines()
    (tmp_path / "a" / name).write_text("\n".join(lines[:3]) + "\n")
    again = _dm(root, tmp_path / "a", 0.25)
    assert again.train_subset["reused"] and len(again.datasets["train"]) == 2
    assert [again.raw["train"].sample_name(i) for i in again.datasets["train"].base.indices] == lines[1:3]


# -- identity: config, run folder, leaderboard --------------------------------------------------------

def test_run_folder_and_identity_keep_the_protocols_apart():
    from omegaconf import OmegaConf

    from rsbench.app import identity
    from rsbench.results import config_hash

    full = compose_config(["dataset=eurosat"])
    frozen = compose_config(["dataset=eurosat", "finetune=frozen"])
    frac = compose_config(["dataset=eurosat", "finetune=frozen", "data.label_fraction=0.01", "data.fraction_seed=2"])
    assert [c["run_id"] for c in (full, frozen, frac)] == ["default-s0", "default-frozen-s0", "default-frozen-frac0.01fs2-s0"]
    assert len({config_hash(c) for c in (full, frozen, frac)}) == 3
    assert config_hash(compose_config(["dataset=eurosat", "data.fraction_seed=5"])) == config_hash(full)  # no subset
    ident = identity(OmegaConf.create(frac))
    assert (ident["finetune"], ident["label_fraction"], ident["fraction_seed"]) == ("frozen", 0.01, 2)
    assert frac["task"]["module"]["finetune"]["freeze_encoder"] and not full["task"]["module"]["finetune"]["freeze_encoder"]


def test_leaderboard_rows_apart_and_no_paper_delta(tmp_path):
    import pandas as pd

    from rsbench.leaderboard import write_leaderboard
    from rsbench.results import atomic_write_json

    paper = {"train": "train", "test": "val", "scored_by": "local"}
    runs = tmp_path / "runs"

    def rec(run_id, seed, value, **extra):
        d = runs / "cls/eurosat/vitb_rvsa" / run_id
        atomic_write_json(d / "metrics.json", {
            "status": "ok", "task": "cls", "dataset": "eurosat", "backbone": "vitb_rvsa", "pretrain": "MAE+MTP",
            "tag": "default", "seed": seed, "metric": "OA", "sample_data": False, "run_dir": str(d),
            "protocol": {**paper, "predict": None, "held_out": True}, "paper_protocol": paper,
            "precision": "32-true", "split_source": "rsbench seeded", "metrics": {"OA": value}, **extra})

    for s in (0, 1):
        rec(f"default-s{s}", s, 98.0 + s)  # a record from before the switches: full, every label
        rec(f"default-frozen-s{s}", s, 90.0 + s, finetune="frozen", label_fraction=1.0, fraction_seed=0)
        rec(f"default-frac0.1-s{s}", s, 95.0, finetune="full", label_fraction=0.1, fraction_seed=0)
    (tmp_path / "paper.csv").write_text("task,dataset,metric,backbone,pretrain,value,source\n"
                                        "cls,eurosat,OA,vitb_rvsa,MAE+MTP,98.76,paper\n")
    out = write_leaderboard(tmp_path, runs, tmp_path / "paper.csv")
    df = pd.read_csv(out["csv"])
    assert len(df) == 3 and set(df["n_runs"]) == {2}
    by = {(r.finetune, r.labels): r for r in df.itertuples()}
    assert by[("full", "100%")].mean == 98.5 and by[("full", "100%")].paper == 98.76
    for key, mean in ((("frozen", "100%"), 90.5), (("full", "10% (seed 0)"), 95.0)):
        assert by[key].mean == mean and pd.isna(by[key].paper) and pd.isna(by[key].diff)
    md = out["md"].read_text()
    assert "## Frozen encoder (linear probe for cls), all of the train labels" in md
    assert "## Full finetuning, 10% (seed 0) of the train labels" in md
    frozen_part = md.split("## Frozen encoder")[1].split("\n## ")[0]
    assert "| 90.50 ± 0.71 |" in frozen_part and "98.76" not in frozen_part
    assert "98.76" in md.split("## Frozen encoder")[0]
