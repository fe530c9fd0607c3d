"""What a run record says its number is: protocol (which split trained, which was scored, by whom),
the paper's protocol, precision and split provenance; ``protocol=paper``; the config hash; and one
real LoveDA run on the paper's protocol whose server score is entered afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import compose_config, run_rsbench
from rsbench.app import identity
from rsbench.config import CONF_DIR, _precision
from rsbench.protocol import same, server_protocol
from rsbench.results import RunRecord, config_hash
from test_seg_cli import ONE_THREAD, SEG_TINY

DATASETS = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml") if not p.stem.startswith("_"))
#: docs/protocols.md §1 "Splits" and ../shared/reference/datasets.md: who made each split
SPLIT_SOURCE = {"eurosat": "rsbench seeded", "eurosat_ms": "rsbench seeded", "resisc45": "rsbench seeded",
                "spacenet1": "rsbench seeded", "gvlm": "rsbench seeded", "egybcd": "rsbench seeded",
                "whu": "copy's split (not MTP's)", "oscd": "official cities, rsbench patching",
                "oscd13": "official cities, rsbench patching", "loveda": "official", "levir": "official",
                "cdd": "official", "clcd": "official", "dior": "official", "xview": "rsbench seeded",
                "dior_r": "official", "dota10": "official", "dota20": "official", "fair1m": "official"}
#: the paper's protocol per dataset, from ../shared/reference/mtp_recipes.md §1/§2 (the official configs)
PAPER = {"eurosat": ("train", "val", "local"), "resisc45": ("train", "test", "local"),
         "spacenet1": ("train", "val", "local"), "loveda": ("trainval", "test", "server"),
         **{d: ("train", "test", "local") for d in ("levir", "cdd", "whu", "oscd")},
         "dior": ("trainval", "test", "local"), "xview": ("train", "test", "local"), "dior_r": ("trainval", "test", "local"),
         **{d: ("trainval", "test", "server") for d in ("dota10", "dota20", "fair1m")}}


def _identity(overrides: list[str]) -> dict:
    return identity(OmegaConf.create(compose_config(overrides)))


def test_every_dataset_config_has_a_split_source():
    assert set(DATASETS) == set(SPLIT_SOURCE)


@pytest.mark.parametrize("name", DATASETS)
def test_record_identity_has_protocol_precision_and_split(name, tmp_path):
    ident = _identity([f"dataset={name}", f"dataset.root={tmp_path}"])
    assert ident["precision"] == "32-true" and ident["split_source"] == SPLIT_SOURCE[name]
    p = ident["paper_protocol"]
    if name in PAPER:
        assert (p["train"], p["test"], p["scored_by"]) == PAPER[name]
    proto = ident["protocol"]
    assert proto["scored_by"] == "local" and proto["held_out"]


@pytest.mark.parametrize("name", DATASETS)
def test_protocol_paper_runs_the_papers_protocol(name, tmp_path):
    """protocol=paper: a held-out local number on the paper's splits, or the paper's server split written."""
    base = [f"dataset={name}", f"dataset.root={tmp_path}"]
    cfg = compose_config([*base, "protocol=paper"])
    ident = identity(OmegaConf.create(cfg))
    proto, paper = ident["protocol"], ident["paper_protocol"]
    assert (same(proto, paper) and proto["held_out"]) or same(server_protocol(proto), paper)
    if same(proto, paper):  # nothing to change: the same run as the default one (a finished run is reused)
        assert config_hash(cfg) == config_hash(compose_config(base))


def test_loveda_default_is_not_the_papers_protocol_and_paper_is(tmp_path):
    default = _identity(["dataset=loveda", f"dataset.root={tmp_path}"])
    assert default["protocol"] == {"train": "train", "test": "val", "scored_by": "local", "predict": None, "held_out": True}
    assert not same(default["protocol"], default["paper_protocol"])
    assert server_protocol(default["protocol"]) is None
    cfg = compose_config(["dataset=loveda", f"dataset.root={tmp_path}", "protocol=paper"])
    assert cfg["dataset"]["splits"] == {"train": "trainval", "val": "val", "test": "val", "predict": "test"}
    assert cfg["datamodule"]["splits"]["predict"] == "test"
    proto = identity(OmegaConf.create(cfg))["protocol"]
    assert proto["held_out"] is False  # Val is part of trainval: a local check, never compared


def test_split_source_follows_the_files_in_the_root(tmp_path):
    assert _identity(["dataset=eurosat", f"dataset.root={tmp_path}"])["split_source"] == "rsbench seeded"
    (tmp_path / "eurosat-train.txt").write_text("x.jpg\n")
    assert _identity(["dataset=eurosat", f"dataset.root={tmp_path}"])["split_source"] == "common 60/20/20 (TorchGeo lists)"
    lists = _identity(["dataset=resisc45", f"dataset.root={tmp_path}", f"dataset.kwargs.split_dir={tmp_path}"])
    assert lists["split_source"] == f"lists in {tmp_path}"
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("1.png\n")
    assert _identity(["dataset=egybcd", f"dataset.root={tmp_path}"])["split_source"] == "copy's lists"
    assert _identity(["dataset=egybcd", f"dataset.root={tmp_path}", "dataset.sample=true"])["split_source"] == "generated sample"


def test_default_precision_is_fp32_on_a_gpu_and_bf16_is_a_named_preset(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert _precision("auto") == "32-true"  # the official runs: plain OptimWrapper, no AMP
    for trainer, want in (("auto", "32-true"), ("gpu", "32-true"), ("gpu_bf16", "bf16-mixed")):
        assert compose_config([f"trainer={trainer}"])["trainer"]["precision"] == want, trainer
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)  # emulated only
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla V100")
    with pytest.raises(Exception, match="Tesla V100 has no bf16 support"):
        compose_config(["trainer=gpu_bf16"])


def test_bf16_preset_without_a_gpu_says_so(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(Exception, match="trainer=gpu_bf16 needs a GPU"):
        compose_config(["trainer=gpu_bf16"])


def test_config_hash_of_the_data_node():
    """On the ``data`` node alone (the composed config also copies it into ``datamodule``, which would
    hide a hash that drops every ``data.*`` key)."""
    base = {"data": {"batch_size": 64, "img_size": 224, "num_workers": 4, "normalize": "imagenet"}}
    h = config_hash(base)
    assert config_hash({"data": {**base["data"], "batch_size": 32}}) != h
    assert config_hash({"data": {**base["data"], "img_size": 160}}) != h
    assert config_hash({"data": {**base["data"], "normalize": "dataset"}}) != h
    assert config_hash({"data": {**base["data"], "num_workers": 0}}) == h


def test_config_hash_follows_data_keys_that_change_the_run():
    base = compose_config(["dataset=eurosat"])
    h = config_hash(base)
    for key, value in (("data.batch_size", 32), ("data.img_size", 160), ("data.eval_batch_size", 8),
                       ("data.normalize", "dataset"), ("optim.lr", 1e-3), ("trainer.precision", "bf16-mixed")):
        assert config_hash(compose_config(["dataset=eurosat", f"{key}={value}"])) != h, key
    for key, value in (("data.num_workers", 0), ("protocol", "paper"), ("dataset.split_source", "x"), ("leaderboard", False),
                       ("data.full_check_max_samples", 0), ("dataset.kwargs.verify", "full")):  # checks, not the run
        assert config_hash(compose_config(["dataset=eurosat", f"{key}={value}"])) == h, key


def test_a_changed_config_says_what_changed(tmp_path):
    from rsbench.errors import ConfigError

    cfg = compose_config(["dataset=eurosat"])
    first = RunRecord(tmp_path, cfg, {"task": "cls"})
    first.start()
    first.finish({"OA": 1.0}, {})
    changed = compose_config(["dataset=eurosat", "data.batch_size=32"])
    with pytest.raises(ConfigError, match=r"differs in: .*data\.batch_size: 64 → 32"):
        RunRecord(tmp_path, changed, {"task": "cls"}).execute(lambda resume: ({}, {}), checkpoint=tmp_path / "x.ckpt")


@pytest.mark.slow
def test_loveda_paper_protocol_run_then_server_score(tmp_path):
    """A real tiny run with protocol=paper: the record shows the protocol, the leaderboard waits for the
    server, ``rsbench.scores add`` enters the score and the leaderboard shows the server row."""
    root = tmp_path / "data" / "loveda"
    proc = run_rsbench(["dataset=loveda", f"dataset.root={root}", "dataset.sample=true", "+dataset.sample_kwargs.size=80",
                        "protocol=paper", "tag=paper", f"paths.cache_dir={tmp_path / 'cache'}", *SEG_TINY],
                       tmp_path, env=ONE_THREAD)
    run = tmp_path / "results" / "runs" / "seg" / "loveda" / "resnet18" / "paper-s0"
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["precision"] == "32-true" and rec["split_source"] == "generated sample"
    assert rec["protocol"] == {"train": "trainval", "test": "val", "scored_by": "local", "predict": "test", "held_out": False}
    assert rec["paper_protocol"] == {"train": "trainval", "test": "test", "scored_by": "server",
                                     "server": "LoveDA Codabench 13030"}
    assert rec["metrics"]["submission"]["num_files"] == 4
    out = proc.stdout + proc.stderr
    assert "protocol:    train: trainval, scored: val (local), not the paper's" in out
    assert f"python -m rsbench.scores add {run} --metric mIoU" in out
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "awaits the server's score" in board
    local = rec["metrics"]["mIoU"]
    env = {**os.environ, "RSBENCH_RESULTS": str(tmp_path / "results")}
    subprocess.run([sys.executable, "-m", "rsbench.scores", "add", "resnet18/paper-s0", "--metric", "mIoU",
                    "--value", "12.5", "--source", "LoveDA Codabench 13030", "--date", "2025-02-03"],
                   check=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["server_scores"]["mIoU"]["value"] == 12.5 and rec["metrics"]["mIoU"] == local  # kept apart
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "| seg | loveda | resnet18 | none | paper | mIoU | 12.50 | train: trainval, scored: test (server) | 32-true |" in board
    assert "awaits the server's score" not in board
