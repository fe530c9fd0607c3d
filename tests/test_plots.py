"""Plots and tracking (#15): the per-dataset leaderboard figures (bars from the CI columns, the paper beside them),
each run's training curves (loss, learning rates as the schedule, validation metric), wandb groups of a sweep and
the leaderboard as a wandb Table, all offline."""

from __future__ import annotations

import glob
import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, run_rsbench
from test_leaderboard import PAPER_CSV, _rec
from rsbench.leaderboard import aggregate, collect, dataset_bars, load_paper, plot_dataset, write_leaderboard

SMALL = [a for a in TINY if not a.startswith("logger=")]


def _fixture(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for seed, v in enumerate([98.0, 99.0, 97.0, 98.5]):
        _rec(runs, "cls", "eurosat", "vitb_rvsa", seed, v, split="rsbench seeded")
    _rec(runs, "cls", "eurosat", "resnet50", 0, 96.0, pretrain="none", split="rsbench seeded")  # one seed, no paper
    _rec(runs, "cd", "levir", "vitl_rvsa", 0, 92.0, metric="F1")
    (tmp_path / "paper.csv").write_text(PAPER_CSV)
    return runs


def test_per_dataset_figures_take_their_error_bars_from_the_ci_columns(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    runs = _fixture(tmp_path)
    (runs / "cls/eurosat/vitb_rvsa/default-s1/curves.png").write_bytes(b"\x89PNG")  # a run with curves
    calls: list[tuple[str, tuple, dict]] = []
    for name in ("barh", "errorbar"):
        orig = getattr(Axes, name)
        monkeypatch.setattr(Axes, name, lambda self, *a, _o=orig, _n=name, **k: calls.append((_n, a, k)) or _o(self, *a, **k))
    out = write_leaderboard(tmp_path, runs, tmp_path / "paper.csv")

    main = aggregate(collect(runs), load_paper(tmp_path / "paper.csv"))[0]
    groups = {(g["task"], g["dataset"]): g for g in dataset_bars(main)}
    eurosat = groups[("cls", "eurosat")]
    row = main[(main.dataset == "eurosat") & (main.backbone == "vitb_rvsa")].iloc[0]
    vitb, r50 = (next(b for b in eurosat["bars"] if b["label"].startswith(n)) for n in ("vitb_rvsa", "resnet50"))
    assert vitb["value"] == pytest.approx(row["iqm"]) == pytest.approx(98.25)  # IQM of 4 seeds: the middle two
    assert (vitb["ci95_low"], vitb["ci95_high"]) == (pytest.approx(row["ci95_low"]), pytest.approx(row["ci95_high"]))
    assert vitb["err_low"] == pytest.approx(row["iqm"] - row["ci95_low"]) and vitb["err_high"] == pytest.approx(
        row["ci95_high"] - row["iqm"])
    assert vitb["paper"] == 98.76 and r50["paper"] is None and r50["ci95_low"] is None and r50["err_low"] == 0.0

    # what matplotlib is given for this figure: the bars' values, the CI as error bars (only where there is one),
    # the paper's values as hatched bars
    assert len(calls) >= 4  # both figures went through barh / errorbar
    calls.clear()
    plot_dataset(eurosat, tmp_path / "again.png")
    (ours,) = [c for c in calls if c[0] == "barh" and "rsbench" in c[2].get("label", "")]
    assert list(ours[1][1]) == [b["value"] for b in eurosat["bars"]]
    (paper,) = [c for c in calls if c[0] == "barh" and c[2].get("label") == "paper"]
    assert list(paper[1][1]) == [98.76] and paper[2]["hatch"]
    (err,) = [c for c in calls if c[0] == "errorbar"]
    assert list(err[1][0]) == [vitb["value"]]  # resnet50 has one seed: no interval, no error bar
    assert err[2]["xerr"][0] == [pytest.approx(row["iqm"] - row["ci95_low"])]
    assert err[2]["xerr"][1] == [pytest.approx(row["ci95_high"] - row["iqm"])]

    md = out["md"].read_text()
    for png in ("leaderboard_cls_eurosat.png", "leaderboard_cd_levir.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG" and tmp_path / png in out["dataset_pngs"]
        assert f"]({png})" in md
    assert "## Per dataset" in md and "![rsbench − paper](leaderboard.png)" in md  # the Δ chart is kept
    assert "[seed 1](runs/cls/eurosat/vitb_rvsa/default-s1/curves.png)" in md
    assert not list(tmp_path.glob(".*.tmp"))


def test_curves_never_fail_a_run(tmp_path, monkeypatch, caplog):
    import rsbench.curves
    from rsbench.callbacks import TrainingCurves

    cb = TrainingCurves(tmp_path / "curves.png", metric="OA", title="cls / eurosat / x, tag t, seed 0")
    cb.record.update(loss=[[0, 2.0], [1, 1.5], [1, 1.4]], lr_backbone=[[0, 1e-6], [1, 1e-5]],
                     lr_head=[[0, 1e-5], [1, 1e-4]], val=[[1, 0, 50.0]])
    assert cb.draw() == tmp_path / "curves.png" and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    series, source = rsbench.curves.curve_series(None, "OA", cb.record)
    assert list(series["loss"][1]) == [2.0, 1.4] and "TrainingCurves" in source  # a step seen twice: the last

    def broken(*a, **k):
        raise RuntimeError("no canvas")

    monkeypatch.setattr(rsbench.curves, "plot_curves", broken)
    with caplog.at_level("WARNING"):
        assert cb.draw() is None
    assert "no training curves" in caplog.text and "no canvas" in caplog.text


@pytest.mark.slow
def test_curves_of_a_cli_run_follow_the_schedule(tmp_path, samples):
    import yaml

    from rsbench.curves import curve_series
    from rsbench.models import build_backbone
    from rsbench.tasks.schedule import Schedule

    run_rsbench(["dataset=eurosat", "backbone=resnet18", f"dataset.root={samples('eurosat')}", *SMALL, "logger=csv",
                 "trainer.max_epochs=2", "sched.warmup_epochs=1", "trainer.log_every_n_steps=1",
                 "optim.layer_decay=0.5"], tmp_path)
    run = tmp_path / "results/runs/cls/eurosat/resnet18/default-s0"
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    series, source = curve_series(run / "csv" / "metrics.csv", "OA")
    assert source.startswith("CSV log") and set(series) == {"loss", "lr_backbone", "lr_head", "val"}
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    df = pd.read_csv(run / "csv" / "metrics.csv")
    spe = df[df["train/loss"].notna() & (df["epoch"] == 0)]["step"].nunique()
    sched = Schedule.from_config(cfg["sched"], total_steps=2 * spe, steps_per_epoch=spe)
    n_ids = build_backbone("resnet18", img_size=32).num_layer_ids
    lr = cfg["optim"]["lr"]
    steps, head = series["lr_head"]
    _, first = series["lr_backbone"]
    assert list(steps) == list(range(2 * spe))
    for k in (0, spe // 2, spe, 2 * spe - 1):  # warm-up from 1e-6 of the rate, then the per-epoch cosine
        assert head[k] == pytest.approx(lr * sched(k), rel=1e-6)
        assert first[k] == pytest.approx(lr * 0.5 ** (n_ids - 1) * sched(k), rel=1e-6)
    assert head[0] < head[spe - 1] and list(series["val"][1]) == [0.0, 1.0]  # one validation per epoch


def test_learning_rates_are_logged_at_every_step_lightning_writes_and_only_recorded_when_due(tmp_path):
    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger

    from rsbench.callbacks import TrainingCurves

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            loss = self.b(self.a(batch)).pow(2).mean()
            self.log("probe", loss, on_step=True, on_epoch=False, batch_size=1)
            return loss

        def configure_optimizers(self):
            opt = torch.optim.SGD([{"params": self.a.parameters(), "lr": 0.1}, {"params": self.b.parameters(), "lr": 0.3}])
            sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    curves = TrainingCurves(tmp_path / "curves.png", "OA", every_n_steps=2)  # a cadence other than the loggers'
    trainer = L.Trainer(max_steps=7, log_every_n_steps=3, logger=CSVLogger(tmp_path, name="csv"), callbacks=[curves],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(), train_dataloaders=torch.utils.data.DataLoader(torch.randn(7, 2), batch_size=None))
    df = pd.read_csv(next(tmp_path.glob("csv/*/metrics.csv")))
    written = sorted(df[df["probe"].notna()]["step"])
    assert written == [2, 5]
    lr = df[df["lr/head"].notna()].set_index("step")
    assert sorted(lr.index) == written  # every step Lightning writes, including step 2, which is not due
    assert [lr.loc[k, "lr/head"] for k in written] == pytest.approx([0.3 * 0.5 ** k for k in written])
    assert [lr.loc[k, "lr/backbone"] for k in written] == pytest.approx([0.1 * 0.5 ** k for k in written])
    assert [s for s, _ in curves.record["lr_head"]] == [0, 1, 3, 5]  # the callback's own cadence


def _wandb_records(path: Path):
    """The protobuf records of an offline wandb run's ``.wandb`` file (LevelDB log format: 32 KiB blocks of
    chunks with a 7-byte header crc32c, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4; a 7-byte file header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, block = 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf + chunk if kind == 4 else chunk)
            buf = b""
            yield rec
        elif kind in (2, 3):
            buf += chunk
        elif kind == 0:
            pos += block - pos % block


def _wandb_run(folder: Path):
    files = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1, files
    return next(r.run for r in _wandb_records(Path(files[0])) if r.WhichOneof("record_type") == "run")


@pytest.mark.slow
def test_sweep_members_share_one_wandb_group_offline(tmp_path, samples):
    from rsbench.tracking import sweep_group

    overrides = ["dataset=eurosat", "backbone=resnet18", f"dataset.root={samples('eurosat')}", *SMALL, "logger=wandb",
                 "seed=0,1"]
    run_rsbench(["-m", *overrides], tmp_path, env={"WANDB_MODE": "offline", "WANDB_CONSOLE": "off"})
    base = tmp_path / "results/runs/cls/eurosat/resnet18"
    runs = [_wandb_run(base / f"default-s{s}") for s in (0, 1)]
    assert runs[0].run_group == runs[1].run_group == sweep_group(overrides)  # the sweep's command, hashed
    assert [r.job_type for r in runs] == ["cls", "cls"]
    assert [r.display_name for r in runs] == ["cls/eurosat/resnet18/default-s0", "cls/eurosat/resnet18/default-s1"]
    assert runs[0].run_id != runs[1].run_id  # each member its own wandb run
    assert all((base / f"default-s{s}" / "curves.png").is_file() for s in (0, 1))  # no CSV log: the callback's record


def test_sweep_group_keeps_the_users_group(monkeypatch):
    from omegaconf import OmegaConf

    from rsbench.tracking import ENV_GROUP, SweepGroup, sweep_group

    cfg = OmegaConf.create({"hydra": {"overrides": {"task": ["seed=0,1", "dataset=eurosat"]}, "job": {"config_name": "config"}}})
    monkeypatch.delenv(ENV_GROUP, raising=False)
    cb = SweepGroup()
    cb.on_multirun_start(cfg)
    import os

    assert os.environ[ENV_GROUP] == sweep_group(["dataset=eurosat", "seed=0,1"]).strip()  # order does not matter
    cb.on_multirun_end(cfg)
    assert ENV_GROUP not in os.environ
    monkeypatch.setenv(ENV_GROUP, "mine")
    cb.on_multirun_start(cfg)
    assert os.environ[ENV_GROUP] == "mine"


def test_leaderboard_logged_as_a_wandb_table_offline(tmp_path, monkeypatch, capsys):
    from rsbench.leaderboard import main

    runs = _fixture(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    main(["--results-dir", str(tmp_path), "--runs-dir", str(runs), "--paper", str(tmp_path / "paper.csv"), "--wandb"])
    assert "wandb:" in capsys.readouterr().out
    (folder,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    (table,) = glob.glob(f"{folder}/files/media/table/leaderboard_[0-9]*.table.json")
    t = json.loads(Path(table).read_text())
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert t["columns"] == list(board.columns) and len(t["data"]) == len(board) == 3
    rows = [dict(zip(t["columns"], r)) for r in t["data"]]
    vitb = next(r for r in rows if r["backbone"] == "vitb_rvsa")
    assert vitb["iqm"] == pytest.approx(98.25) and vitb["paper"] == 98.76 and vitb["ci95_low"] is not None
    assert next(r for r in rows if r["backbone"] == "resnet50")["paper"] is None  # NaN → None, not "nan"
    assert glob.glob(f"{folder}/files/media/table/leaderboard_backbones_*.table.json")
    assert glob.glob(f"{folder}/files/media/images/figures/leaderboard_cls_eurosat_*.png")
    run = next(r.run for r in _wandb_records(Path(glob.glob(f"{folder}/run-*.wandb")[0]))
               if r.WhichOneof("record_type") == "run")
    assert run.job_type == "leaderboard"
