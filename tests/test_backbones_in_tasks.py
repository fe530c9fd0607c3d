"""Every MTP backbone plugs into every task through the app, with no task code aware of which
backbone it has (tiny widths, random init)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_rsbench

pytestmark = pytest.mark.slow
CONF = Path(__file__).resolve().parents[1] / "conf"

TINY_IXL = ["backbone=internimage_xl", "backbone.pretrained=none", "+backbone.kwargs.channels=16",
            "+backbone.kwargs.depths=[1,1,2,1]", "+backbone.kwargs.groups=[1,2,4,8]"]
TINY_VIT = ["backbone=vitb_rvsa", "backbone.pretrained=none", "+backbone.kwargs.embed_dim=32",
            "+backbone.kwargs.depth=4", "+backbone.kwargs.num_heads=2", "+backbone.kwargs.out_indices=[0,1,2,3]",
            "+backbone.kwargs.interval=2"]
COMMON = ["trainer=cpu", "trainer.enable_progress_bar=false", "data.num_workers=0", "logger=none",
          "dataset.sample=true", "data.batch_size=2", "callbacks.plots.num=1"]
TASKS = {
    "cls": ["dataset=eurosat", "trainer.max_epochs=1", "sched.warmup_epochs=0", "data.img_size=112"],
    "cd": ["dataset=levir", "trainer.max_epochs=1", "sched.warmup_epochs=0", "data.img_size=112",
           "dataset.kwargs.tile=112", "task.module.decoder_channels=[16,16,8,8]"],
    "seg": ["dataset=loveda", "trainer.max_steps=2", "data.img_size=112", "+dataset.sample_kwargs.size=128",
            "task.module.head.channels=16", "trainer.val_check_interval=2"],
    "det": ["dataset=dior", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "data.img_size=128",
            "+task.module.detector.fpn_channels=32", "+task.module.detector.representation_size=64"],
    "rotdet": ["dataset=dior_r", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "data.img_size=128",
               "sched.warmup_steps=1", "+task.module.detector.fpn_channels=32",
               "+task.module.detector.representation_size=64", "+task.module.detector.rpn_post_nms_top_n_train=300",
               "+task.module.detector.rpn_post_nms_top_n_test=300"],
}


#: the tiny ViT's shape; the released file's key layout: the pretraining encoder (fpn ops, final norm) at a
#: 224 grid, under ``state_dict``, with the released file name in the weights folder
ARCH = {"embed_dim": 32, "depth": 4, "num_heads": 2, "out_indices": [0, 1, 2, 3], "interval": 2}
RELEASED = {"vitb_rvsa": "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth",
            "vitl_rvsa": "last_vit_l_rvsa_ss_is_rd_pretrn_model_encoder.pth"}


def _released_encoder_file(tmp_path, name: str) -> dict:
    """Write a tiny MTP encoder file in the released layout into ``tmp_path/weights``; returns its shape."""
    import torch

    from rsbench.models import build_backbone

    enc = build_backbone(name, img_size=224, features="pyramid", **ARCH)  # the pretraining copy, rel-pos on
    sd = {k: v.clone() for k, v in enc.state_dict().items()}
    sd["norm.weight"], sd["norm.bias"] = torch.ones(32), torch.zeros(32)
    (tmp_path / "weights").mkdir(exist_ok=True)
    torch.save({"epoch": 1, "iteration": 10, "state_dict": sd, "optimizer": {}}, tmp_path / "weights" / RELEASED[name])
    return ARCH


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("backbone", ["internimage_xl", "vitb_rvsa"])
def test_backbone_in_task(tmp_path, task, backbone):
    bb = TINY_IXL if backbone == "internimage_xl" else TINY_VIT
    run_rsbench([*TASKS[task], *bb, *COMMON], tmp_path)
    recs = list((tmp_path / "results" / "runs" / task).glob(f"*/{backbone}/default-s0/metrics.json"))
    assert len(recs) == 1
    rec = json.loads(recs[0].read_text())
    assert rec["status"] == "ok" and rec["backbone"] == backbone
    assert 0.0 <= rec["metrics"][rec["metric"]] <= 100.0


def test_user_example_with_released_layout_weights(tmp_path):
    """``task=cd dataset=levir backbone=vitl_rvsa`` with ``pretrained=mtp`` (the default) once a file
    with the released name and key layout sits in the weights folder: it loads and trains."""
    arch = _released_encoder_file(tmp_path, "vitl_rvsa")
    kw = [f"+backbone.kwargs.{k}={v}".replace(" ", "") for k, v in arch.items()]
    run_rsbench(["task=cd", "dataset=levir", "backbone=vitl_rvsa", *kw, *COMMON, *TASKS["cd"][1:]], tmp_path)
    rec = json.loads((tmp_path / "results/runs/cd/levir/vitl_rvsa/default-s0/metrics.json").read_text())
    assert rec["status"] == "ok" and rec["pretrain"] == "MAE+MTP"
    log = (tmp_path / "results/runs/cd/levir/vitl_rvsa/default-s0/run.log").read_text()
    assert "pretrained weights:" in log and "missing 0" in log


def test_det_with_released_layout_weights_beside_the_paper(tmp_path):
    """``dataset=dior backbone=vitb_rvsa`` with an MTP-format encoder file: the detection copy of the ViT
    (no rel-pos in the global blocks) loads it with nothing missing, and the leaderboard puts the run
    beside the paper's DIOR value (the data here is not marked as generated, so it is compared)."""
    from rsbench.data.samples import MARKER, write_sample

    arch = _released_encoder_file(tmp_path, "vitb_rvsa")
    root = write_sample("dior", tmp_path / "data" / "dior")
    (root / MARKER).unlink()
    kw = [f"+backbone.kwargs.{k}={v}".replace(" ", "") for k, v in arch.items()]
    common = [c for c in COMMON if c != "dataset.sample=true"]
    run_rsbench(["backbone=vitb_rvsa", *kw, *common, *TASKS["det"], f"dataset.root={root}"], tmp_path)
    run = tmp_path / "results/runs/det/dior/vitb_rvsa/default-s0"
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["pretrain"] == "MAE+MTP" and rec["metric"] == "AP50"
    log = (run / "run.log").read_text()
    assert "pretrained weights:" in log and "missing 0" in log
    board = (tmp_path / "results" / "leaderboard.csv").read_text().splitlines()
    row = next(r for r in board if r.startswith("det,dior,vitb_rvsa"))
    assert ",79.4," in row  # the paper's DIOR AP50 for ViT-B + RVSA (MAE+MTP)


def test_rotdet_every_dataset_with_released_layout_weights(tmp_path):
    """``task=rotdet`` on DIOR-R, DOTA-v1.0, DOTA-v2.0 and FAIR1M-2.0 (one sweep) with an MTP-format ViT-B
    encoder file: every member loads it with nothing missing, leaves a record and a leaderboard row, and
    DIOR-R's row (its local test is the paper's protocol) sits beside the paper's 71.29."""
    from rsbench.data.samples import MARKER, write_sample

    arch = _released_encoder_file(tmp_path, "vitb_rvsa")
    datasets = ["dior_r", "dota10", "dota20", "fair1m"]
    for name in datasets:  # each as its config's sample would be, without the generated-data marker
        cfg = yaml.safe_load((CONF / "dataset" / f"{name}.yaml").read_text())
        root = write_sample(cfg.get("loader", name), tmp_path / "data" / name, **(cfg.get("sample_kwargs") or {}))
        (root / MARKER).unlink()
    kw = [f"+backbone.kwargs.{k}={v}".replace(" ", "") for k, v in arch.items()]
    common = [c for c in COMMON if c != "dataset.sample=true"]
    rot = [a for a in TASKS["rotdet"] if not a.startswith("dataset=")]
    run_rsbench(["-m", f"dataset={','.join(datasets)}", "backbone=vitb_rvsa", *kw, *common, *rot], tmp_path,
                timeout=600)
    board = (tmp_path / "results" / "leaderboard.csv").read_text().splitlines()
    for name in datasets:
        run = tmp_path / f"results/runs/rotdet/{name}/vitb_rvsa/default-s0"
        rec = json.loads((run / "metrics.json").read_text())
        assert rec["status"] == "ok" and rec["pretrain"] == "MAE+MTP" and rec["metric"] == "mAP", name
        assert "missing 0" in (run / "run.log").read_text(), name
        assert any(r.startswith(f"rotdet,{name},vitb_rvsa") for r in board), name
    row = next(r for r in board if r.startswith("rotdet,dior_r,vitb_rvsa"))
    assert ",71.29," in row
