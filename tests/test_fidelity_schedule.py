"""The learning rate at every step equals the official MTP run's.

References, none of them rsbench's own formula:

* the official training logs (ViTAE-Transformer/MTP, ``RS_Tasks_Finetune/*/logs/``), which print
  ``base_lr`` (the base rate × schedule) and ``lr`` (MMEngine's ``param_groups[0]``: layer 0 of the
  ViT, scale 0.9 ** (L - 1)) before the iteration they name (RuntimeInfoHook.before_train_iter);
* a transcription of MMEngine's *chained* ``LinearLR`` / ``CosineAnnealingLR`` and of
  ``ParamSchedulerHook`` (iter-based schedulers stepped after each iteration, epoch-based ones
  after each epoch), from mmengine/optim/scheduler/param_scheduler.py, run against a real
  Lightning Trainer;
* the official layer-id and weight-decay rule of ``LayerDecayOptimizerConstructor_ViT``
  (RS_Tasks_Finetune/*/mmcv_custom/layer_decay_optimizer_constructor_vit.py).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

from conftest import compose_config
from rsbench.data.datamodule import RSDataModule
from rsbench.models import build_backbone
from rsbench.models.layer_decay import param_groups
from rsbench.tasks.schedule import Schedule

LOGS = "ViTAE-Transformer/MTP RS_Tasks_Finetune"


# -- references ---------------------------------------------------------------------------------

class MMScheduler:
    """One MMEngine param scheduler in its chained form (``_ParamScheduler.step`` and ``_get_value``)."""

    def __init__(self, groups, kind, *, begin, end, by_epoch, start_factor=1.0 / 3, T_max=None, eta_min=0.0):
        self.groups, self.kind, self.begin, self.end, self.by_epoch = groups, kind, begin, end, by_epoch
        self.start_factor, self.eta_min = start_factor, eta_min
        self.total_iters = end - begin - 1  # LinearParamScheduler
        self.T_max = T_max or (end - begin)  # CosineAnnealingParamScheduler
        for g in groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_values = [g["initial_lr"] for g in groups]
        self.last_step, self.global_step = -1, -1
        self.step()

    def _value(self, lr, base):
        n = self.last_step
        if self.kind == "linear":
            s, e = self.start_factor, 1.0
            if n == 0:
                return lr * s
            return lr * (1.0 + (e - s) / (self.total_iters * s + (n - 1) * (e - s)))
        T, m = self.T_max, self.eta_min
        if n == 0:
            return lr
        if (n - 1 - T) % (2 * T) == 0:
            return lr + (base - m) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * n / T)) / (1 + math.cos(math.pi * (n - 1) / T)) * (lr - m) + m

    def step(self):
        self.global_step += 1
        if self.begin <= self.global_step < self.end:
            self.last_step += 1
            for g, base in zip(self.groups, self.base_values):
                g["lr"] = self._value(g["lr"], base)


def mmengine_lrs(initial_lrs, *, iters_per_epoch, epochs=None, warmup_epochs=None, max_iters=None,
                 warmup_iters=None, start_factor=1e-6):
    """The LR of every group at every iteration of an MMEngine run of the MTP recipes.

    Epoch recipes (cls/cd): ``LinearLR(by_epoch=True, end=warmup_epochs, convert_to_iter_based=True)``
    then ``CosineAnnealingLR(by_epoch=True, begin=warmup_epochs, end=epochs, T_max=epochs-warmup)``.
    Iteration recipes (seg): ``LinearLR(by_epoch=False, end=warmup_iters)`` then
    ``CosineAnnealingLR(by_epoch=False, begin=warmup_iters, end=max_iters, T_max=max_iters-warmup)``.
    """
    groups = [{"lr": lr} for lr in initial_lrs]
    if epochs is not None:
        warm_end = int(warmup_epochs * iters_per_epoch)  # build_iter_from_epoch
        scheds = [MMScheduler(groups, "linear", begin=0, end=warm_end, by_epoch=False, start_factor=start_factor),
                  MMScheduler(groups, "cosine", begin=warmup_epochs, end=epochs, by_epoch=True,
                              T_max=epochs - warmup_epochs)]
        n_epochs = epochs
    else:
        scheds = [MMScheduler(groups, "linear", begin=0, end=warmup_iters, by_epoch=False, start_factor=start_factor),
                  MMScheduler(groups, "cosine", begin=warmup_iters, end=max_iters, by_epoch=False,
                              T_max=max_iters - warmup_iters)]
        n_epochs = math.ceil(max_iters / iters_per_epoch)
    out = []
    for _ in range(n_epochs):
        for _ in range(iters_per_epoch):
            if max_iters is not None and len(out) == max_iters:
                return out
            out.append([g["lr"] for g in groups])
            for s in scheds:
                if not s.by_epoch:
                    s.step()
        for s in scheds:
            if s.by_epoch:
                s.step()
    return out


def official_vit_layer_id(name: str, num_layers: int) -> int:
    """``get_num_layer_for_vit`` of the official constructor (names as in the whole model)."""
    if name in ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed"):
        return 0
    if name.startswith("backbone.patch_embed"):
        return 0
    if name.startswith("backbone.blocks"):
        return int(name.split(".")[2]) + 1
    return num_layers - 1


def official_no_weight_decay(name: str, p: torch.Tensor) -> bool:
    return len(p.shape) == 1 or name.endswith(".bias") or "pos_embed" in name


# -- iterations per epoch -------------------------------------------------------------------------

class Items(Dataset):
    def __init__(self, n: int, size: int = 8) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randn(3, self.size, self.size, generator=g), "label": torch.tensor(i % 3)}


class SyntheticDM(RSDataModule):
    """The real datamodule (its loaders) over a synthetic train split of ``n`` samples."""

    def __init__(self, n: int, batch: int, size: int = 8) -> None:
        super().__init__(dataset="eurosat", root="/nonexistent", splits={"train": "train"}, batch_size=batch,
                         num_workers=0)
        self.n, self.size = n, size

    def check(self) -> None:
        self.datasets = self.datasets or {"train": Items(self.n, self.size)}


def _datamodule(n: int, batch: int, *, world: int = 1, rank: int = 0, max_epochs: int = 100) -> RSDataModule:
    dm = SyntheticDM(n, batch)
    dm.check()
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank, max_epochs=max_epochs, lightning_module=None)
    return dm


def _lightning_ddp_loader(dm: RSDataModule, world: int, rank: int):
    """The train loader as Lightning rebuilds it under DDP (DistributedSampler injected)."""
    from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    dl = dm.train_dataloader()
    sampler = _get_distributed_sampler(dl, shuffle=True, overfit_batches=0, mode=RunningStage.TRAINING,
                                       num_replicas=world, rank=rank)
    return _update_dataloader(dl, sampler, mode=RunningStage.TRAINING)


# The official counts, from the logs: EuroSAT epoch 2 starts at iter 354 = 254 + 100
# (Scene_Classification/logs/eurosat/rvsa-b-mae-mtp.json line 3), RESISC-45 at 198 = 2 × 99
# (resisc45/rvsa-b-mae-mtp.json line 2), LEVIR-CD prints [1][ 50/223] (levir/train/rvsa-b-mae-mtp.log line 1204).
OFFICIAL_ITERS = [(16200, 64, 254), (6300, 64, 99), (7120, 32, 223)]


@pytest.mark.parametrize("n,batch,iters", OFFICIAL_ITERS)
def test_iterations_per_epoch_keep_the_last_partial_batch(n, batch, iters):
    dl = _datamodule(n, batch).train_dataloader()
    assert len(dl) == iters and dl.drop_last is False
    assert sum(1 for _ in dl.batch_sampler) == iters


@pytest.mark.parametrize("n,batch,iters", OFFICIAL_ITERS)
def test_iterations_per_epoch_on_eight_devices(n, batch, iters):
    """The paper's 8 GPUs: per-device batch = batch / 8, DistributedSampler pads to ceil(n / 8)."""
    for rank in (0, 7):
        dl = _lightning_ddp_loader(_datamodule(n, batch, world=8, rank=rank), 8, rank)
        assert dl.batch_size == batch // 8 and len(dl) == iters


def test_iteration_based_runs_get_full_batches_only():
    """mmseg's InfiniteSampler never yields a short batch; an epoch loader drops the remainder."""
    dl = _datamodule(10, 4, max_epochs=-1).train_dataloader()
    assert len(dl) == 2 and [len(b) for b in dl.batch_sampler] == [4, 4]  # 10 images: two full batches, no third


# -- the official logs ----------------------------------------------------------------------------

def _vit_group0_scale(depth: int, layer_decay: float) -> float:
    """rsbench's LR scale of its first group (layer 0) on a ViT-RVSA of the given depth (tiny width)."""
    bb = build_backbone("vitb_rvsa", img_size=112, embed_dim=16, depth=depth, num_heads=1,
                        out_indices=[depth - 1], drop_path_rate=0.0)
    model = torch.nn.Module()
    model.backbone, model.head = bb, torch.nn.Linear(16, 2)
    groups = param_groups(model.named_parameters(), backbone=bb, backbone_prefix="backbone.",
                          lr=1.0, weight_decay=0.05, layer_decay=layer_decay)
    assert groups[0]["layer_id"] == 0
    return groups[0]["lr_scale"]


def _recipe_lr(overrides, *, n_train, depth):
    """(step → base LR × schedule, the logged group's scale) from rsbench's composed recipe."""
    c = compose_config([*overrides, "logger=none"])
    spe = len(_datamodule(n_train, c["data"]["batch_size"], max_epochs=c["trainer"]["max_epochs"]).train_dataloader())
    max_steps = c["trainer"].get("max_steps", -1)
    total = max_steps if max_steps and max_steps > 0 else spe * c["trainer"]["max_epochs"]
    sched = Schedule.from_config(c["sched"], total_steps=total, steps_per_epoch=spe)
    lr = float(c["optim"]["lr"])
    return (lambda step: lr * sched(step)), _vit_group0_scale(depth, c["optim"]["layer_decay"]), spe


# (line in the log, iter as logged, base_lr, lr) copied from the JSON logs (full precision).
EUROSAT = [  # Scene_Classification/logs/eurosat/rvsa-b-mae-mtp.json
    (1, 100, 4.680906382978726e-06, 1.189823598050072e-06),
    (10, 1216, 5.7446811063829296e-05, 1.4602208598962178e-05),
    (11, 1370, 5.999999999999943e-05, 1.5251194969974041e-05),
    (13, 1624, 5.9983597720227214e-05, 1.5247025730528072e-05),
    (100, 12392, 3.4447909431354934e-05, 8.756196384093446e-06),
    (204, 25346, 1.6402279772218375e-08, 4.1692394459694345e-09),
]
RESISC45 = [  # Scene_Classification/logs/resisc45/rvsa-l-mae-mtp.json (ViT-L: lr = base_lr × 0.9 ** 25)
    (1, 99, 1.1902882105263163e-05, 8.545055111101799e-07),
    (9, 891, 5.996496680496982e-05, 4.304872900129648e-06),
    (120, 11682, 2.305539921123172e-05, 1.6551424699175542e-06),
    (200, 19404, 9.728075597370219e-08, 6.983765895466275e-09),
]
SPACENET = [  # Semantic_Segmentation/logs/spacenet/train/rvsa-b-mae-mtp.json
    (1, 50, 1.9613655770513682e-06, 4.985528137167665e-07),
    (29, 1450, 5.799866777851912e-05, 1.4742483171482422e-05),
    (30, 1500, 6.000000000000008e-05, 1.5251194969974038e-05),
    (31, 1550, 5.9999942317548325e-05, 1.525118030786873e-05),
    (800, 39950, 3.096152283752115e-05, 7.870003689372158e-06),
    (1603, 80000, 2.4024352507368434e-14, 6.10666806862092e-15),
]
CASES = {
    "eurosat": (["dataset=eurosat", "backbone=vitb_rvsa"], 16200, 12, EUROSAT),
    "resisc45": (["dataset=resisc45", "backbone=vitl_rvsa"], 6300, 24, RESISC45),
    # SpaceNet 1's train split size does not enter an iteration-based schedule
    "spacenet1": (["dataset=spacenet1", "backbone=vitb_rvsa"], 5000, 12, SPACENET),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lr_equals_the_official_json_logs(case):
    overrides, n_train, depth, rows = CASES[case]
    base_lr, scale, _ = _recipe_lr(overrides, n_train=n_train, depth=depth)
    for line, it, logged_base, logged_lr in rows:
        step = it - 1  # the log names the iteration 1-based, the LR is the one it ran with
        assert base_lr(step) == pytest.approx(logged_base, rel=1e-12, abs=0), f"{case} log line {line}"
        assert base_lr(step) * scale == pytest.approx(logged_lr, rel=1e-12, abs=0), f"{case} log line {line}"


# (line, epoch, iter in epoch, base_lr, lr) as printed (4 digits):
# Change_Detection/logs/levir/train/rvsa-b-mae-mtp.log
LEVIR = [
    (1204, 1, 50, "2.6392e-06", "6.7085e-07"),
    (1228, 5, 200, "5.8761e-05", "1.4936e-05"),
    (1230, 6, 50, "6.0000e-05", "1.5251e-05"),
    (1235, 7, 50, "5.9993e-05", "1.5249e-05"),
    (1615, 75, 50, "3.2273e-05", "8.2033e-06"),
    (2038, 150, 200, "7.0411e-09", "1.7897e-09"),
]


def test_lr_equals_the_official_levir_text_log():
    base_lr, scale, spe = _recipe_lr(["dataset=levir", "backbone=vitb_rvsa"], n_train=7120, depth=12)
    assert spe == 223
    for line, epoch, i, logged_base, logged_lr in LEVIR:
        step = (epoch - 1) * spe + i - 1
        assert f"{base_lr(step):.4e}" == logged_base, f"levir log line {line}"
        assert f"{base_lr(step) * scale:.4e}" == logged_lr, f"levir log line {line}"


# -- configure_optimizers through a real Trainer ---------------------------------------------------

TINY_VIT = {"embed_dim": 32, "depth": 4, "num_heads": 2, "out_indices": [0, 1, 2, 3], "interval": 2,
            "drop_path_rate": 0.0}
BASE_LR, LAYER_DECAY, WD = 6e-5, 0.9, 0.05


class LRRecorder(L.Callback):
    """The LR of every group as each optimiser step runs, and the batch sizes."""

    def __init__(self) -> None:
        self.lrs, self.sizes = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])
        self.sizes.append(len(batch["image"]))


def fit_tiny_vit(sched, **trainer_kw):
    """ClassificationTask on a tiny ViT-RVSA, 10 images at batch 4 (4, 4, 2 per epoch)."""
    from rsbench.tasks.classification import ClassificationTask

    torch.manual_seed(0)
    task = ClassificationTask(
        backbone={"name": "vitb_rvsa", "pretrained": None, "features": "maps", "kwargs": TINY_VIT},
        optim={"lr": BASE_LR, "weight_decay": WD, "layer_decay": LAYER_DECAY}, sched=sched, img_size=112,
        num_classes=3)
    rec = LRRecorder()
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[rec], **trainer_kw)
    trainer.fit(task, datamodule=SyntheticDM(10, 4, size=112))
    return trainer, rec


def official_initial_lrs(groups):
    """Each rsbench group's LR by the official constructor's rule, from its parameter names."""
    num_layers = TINY_VIT["depth"] + 2
    out = []
    for g in groups:
        ids = {official_vit_layer_id(n, num_layers) for n in g["param_names"]}
        assert len(ids) == 1, g["param_names"]
        out.append(BASE_LR * LAYER_DECAY ** (num_layers - 1 - ids.pop()))
    return out


@pytest.fixture(scope="module")
def epoch_run():
    """The cls/cd recipe shape: warm-up in epochs (per iteration), cosine stepped per epoch."""
    return fit_tiny_vit({"name": "cosine", "warmup_epochs": 2, "warmup_start_factor": 1e-6, "cosine_by_epoch": True},
                        max_epochs=4)


def test_lr_of_every_group_at_every_step_per_epoch_recipe(epoch_run):
    trainer, rec = epoch_run
    assert rec.sizes == [4, 4, 2] * 4  # the last partial batch is a step of its own
    schedule = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
    assert (schedule.steps_per_epoch, schedule.total_steps, schedule.warmup_steps) == (3, 12, 6)
    groups = trainer.optimizers[0].param_groups
    expected = mmengine_lrs(official_initial_lrs(groups), iters_per_epoch=3, epochs=4, warmup_epochs=2)
    assert len(rec.lrs) == len(expected) == 12
    for step, (got, want) in enumerate(zip(rec.lrs, expected)):
        assert got == pytest.approx(want, rel=1e-12, abs=0), f"step {step}"


def test_lr_of_every_group_at_every_step_per_iteration_recipe():
    """The seg recipe shape: max_epochs=-1, warm-up and cosine in iterations."""
    trainer, rec = fit_tiny_vit({"name": "cosine", "warmup_steps": 4, "warmup_start_factor": 1e-6,
                                 "cosine_by_epoch": False}, max_epochs=-1, max_steps=7)
    assert rec.sizes == [4] * 7  # full batches only, as mmseg's InfiniteSampler
    expected = mmengine_lrs(official_initial_lrs(trainer.optimizers[0].param_groups), iters_per_epoch=2,
                            max_iters=7, warmup_iters=4)
    assert len(rec.lrs) == 7
    for step, (got, want) in enumerate(zip(rec.lrs, expected)):
        assert got == pytest.approx(want, rel=1e-12, abs=0), f"step {step}"


def test_weight_decay_of_every_parameter_follows_the_official_rule(epoch_run):
    trainer, _ = epoch_run
    task = trainer.lightning_module
    params = dict(task.named_parameters())
    wd = {n: g["weight_decay"] for g in trainer.optimizers[0].param_groups for n in g["param_names"]}
    assert set(wd) == set(params)
    for n, p in params.items():
        assert wd[n] == (0.0 if official_no_weight_decay(n, p) else WD), n
    norms = [n for n in params if ".norm" in n]
    rel_pos = [n for n in params if "rel_pos" in n or "relative_position_bias_table" in n]
    assert norms and all(wd[n] == 0.0 for n in norms)  # LayerNorm weights and biases
    assert rel_pos and all(wd[n] == WD for n in rel_pos)  # 2-D tables decay
    assert wd["backbone.pos_embed"] == 0.0 and wd["head.weight"] == WD and wd["head.bias"] == 0.0
