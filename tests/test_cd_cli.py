"""``python -m rsbench task=cd ...`` end to end on sample data, and the user's example command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_rsbench
from rsbench.app import datasets_by_task

pytestmark = pytest.mark.slow

CD = datasets_by_task()["cd"]  # every change-detection dataset config
# Tiny runs: one epoch with validation, 32² crops, a narrow decoder; samples written to <data_dir>/<name>.
TINY_CD = ["trainer=cpu", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "trainer.enable_progress_bar=false",
           "data.batch_size=2", "data.img_size=32", "data.num_workers=0", "logger=none", "sched.warmup_epochs=0",
           "task.module.decoder_channels=[16,16,8,8]", "callbacks.plots.num=2"]


# One intra-op thread: on a shared 2-core machine, two OpenMP threads per process under load are
# up to 30× slower (spin-waits), and these models are far too small to gain from a second thread.
ENV = {"OMP_NUM_THREADS": "1"}


def _record(tmp: Path, dataset: str, backbone: str) -> dict:
    return json.loads((tmp / "results/runs/cd" / dataset / backbone / "default-s0/metrics.json").read_text())


def test_fit_and_test_every_cd_dataset(tmp_path):
    """One multirun over all CD datasets (one process: the start-up cost is paid once)."""
    proc = run_rsbench(["-m", "task=cd", f"dataset={','.join(CD)}", "backbone=resnet18", "dataset.sample=true",
                        *TINY_CD], tmp_path, timeout=600, env=ENV)
    board = (tmp_path / "results/leaderboard.md").read_text()
    for name in CD:
        rec = _record(tmp_path, name, "resnet18")
        assert rec["status"] == "ok" and rec["metric"] == "F1" and rec["sample_data"], name
        m = rec["metrics"]
        for k in ("F1", "Precision", "Recall", "IoU", "OA", "mF1", "mIoU"):
            assert 0.0 <= m[k] <= 100.0, (name, k)
        (tn, fp), (fn, tp) = m["confusion_matrix"]
        assert m["num_test_pixels"] == tn + fp + fn + tp > 0
        assert m["F1"] == pytest.approx(200 * tp / (2 * tp + fp + fn) if tp else m["F1"], abs=1e-3)
        assert m["OA"] == pytest.approx(100 * (tp + tn) / m["num_test_pixels"], abs=1e-3)
        assert set(m["per_class"]["F1"]) == {"unchanged", "changed"}
        run_dir = Path(rec["run_dir"])
        pngs = sorted((run_dir / "predictions").glob("*.png"))
        assert len(pngs) == 2, name
        assert f"| cd | {name} | resnet18 | none | default | F1 |" in board
    cfg = (Path(_record(tmp_path, "oscd", "resnet18")["run_dir"]) / "config.yaml").read_text()
    assert "resize: 32" in cfg and "max_epochs: 1" in cfg  # OSCD's recipe resizes to img_size
    from PIL import Image

    png = Image.open(sorted((Path(_record(tmp_path, "oscd", "resnet18")["run_dir"]) / "predictions").glob("*.png"))[0])
    assert png.size[0] > 3 * png.size[1]  # date 1 | date 2 | label | prediction, side by side
    assert "GENERATED SAMPLE DATA" in proc.stdout + proc.stderr


def test_recipes_compose_to_the_paper_settings(tmp_path):
    from hydra import compose, initialize_config_dir

    from rsbench.config import CONF_DIR, register_resolvers

    register_resolvers()
    expect = {"levir": (150, 256), "whu": (200, 256), "cdd": (200, 256), "oscd": (100, 224),
              "gvlm": (150, 256), "clcd": (150, 256), "egybcd": (150, 256)}
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for name, (epochs, size) in expect.items():
            c = compose("config", overrides=[f"dataset={name}", "backbone=vitl_rvsa"])
            assert c.task.name == "cd" and c.task.metric == "F1"  # the dataset implies the task
            assert (c.trainer.max_epochs, c.data.img_size, c.data.batch_size) == (epochs, size, 32)
            assert c.optim.lr == 6e-5 and c.optim.layer_decay == 0.9 and c.sched.warmup_epochs == 5
            assert c.sched.cosine_by_epoch and c.task.features == "maps"
        c = compose("config", overrides=["dataset=levir", "backbone=internimage_xl"])
        # the official configs ask for 0.94, and the official constructor makes it a uniform LR
        assert c.optim.lr == 2e-5 and c.optim.layer_decay == 0.94
        assert c.backbone.kwargs.layer_decay_mode == "official"


def test_user_example_with_a_tiny_vit(tmp_path):
    """``python -m rsbench task=cd dataset=levir backbone=vitl_rvsa``, made tiny and weight-free."""
    from rsbench.models import BACKBONES

    assert "vitl_rvsa" in BACKBONES
    run_rsbench(["task=cd", "dataset=levir", "backbone=vitl_rvsa", "backbone.pretrained=none", "dataset.sample=true",
                 "+backbone.kwargs.embed_dim=32", "+backbone.kwargs.depth=4", "+backbone.kwargs.num_heads=2",
                 "+backbone.kwargs.out_indices=[0,1,2,3]", "+backbone.kwargs.interval=2",
                 "data.img_size=112", "dataset.kwargs.tile=112", *[a for a in TINY_CD if not a.startswith("data.img_size")]],
                tmp_path, env=ENV)
    rec = _record(tmp_path, "levir", "vitl_rvsa")
    assert rec["status"] == "ok" and rec["pretrain"] == "none" and 0 <= rec["metrics"]["F1"] <= 100
    assert len(list((Path(rec["run_dir"]) / "predictions").glob("*.png"))) == 2


def test_user_example_without_data_or_weights_says_what_is_missing(tmp_path):
    proc = run_rsbench(["task=cd", "dataset=levir", "backbone=vitl_rvsa"], tmp_path, check=False, env=ENV)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert f"{tmp_path / 'data' / 'levir'} does not exist" in out
    assert "train/{A,B,label}/train_<n>.png" in out and "justchenhao.github.io/LEVIR" in out
    assert "last_vit_l_rvsa_ss_is_rd_pretrn_model_encoder.pth" in out and str(tmp_path / "weights") in out
    assert "Traceback" not in out
    assert not (tmp_path / "results" / "runs").exists() or not list((tmp_path / "results" / "runs").rglob("metrics.json"))
