"""The config is validated before anything is built: one rule per test case, each message naming the key,
what it must be and what it got; keys that nothing reads are refused; the shipped configs all pass."""

from __future__ import annotations

import copy

import pytest
from conftest import TINY, compose_config, run_rsbench
from omegaconf import OmegaConf, open_dict

from rsbench.app import datasets_by_task, validate
from rsbench.errors import ConfigError

#: the datasets of the tasks whose configs are complete (detection's are being added)
DATASETS = sorted(d for task in ("cls", "seg", "cd") for d in datasets_by_task().get(task, []))


def _validate(overrides: list[str]) -> None:
    validate(compose_config(["dataset=eurosat", "backbone=resnet18", *overrides], resolve=False))


@pytest.fixture(scope="module")
def base():
    return compose_config(["dataset=eurosat", "backbone=resnet18"], resolve=False)


def _with(base, **values):
    """``base`` with ``key=value`` set as Hydra would parse them (dots in keys as ``__``), keys added when new."""
    cfg = copy.deepcopy(base)
    with open_dict(cfg):
        for key, value in values.items():
            OmegaConf.update(cfg, key.replace("__", "."), value, force_add=True)
    return cfg


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_shipped_dataset_config_passes(dataset):
    _validate([f"dataset={dataset}"])


def test_demo_and_tiny_runs_pass():
    _validate(["experiment=demo"])
    _validate(TINY)
    _validate(["dataset=loveda", "trainer.max_epochs=-1", "trainer.max_steps=10"])  # iteration-based: -1 + steps


@pytest.mark.parametrize("key, value, message", [
    ("data.batch_size", "abc", "data.batch_size must be a positive integer, got 'abc'"),
    ("data.batch_size", -4, "data.batch_size must be a positive integer, got -4"),
    ("data.batch_size", 0, "data.batch_size must be a positive integer, got 0"),
    ("data.batch_size", 8.0, "data.batch_size must be a positive integer, got 8.0"),
    ("data.batch_size", True, "data.batch_size must be a positive integer, got True"),
    ("data.eval_batch_size", 0, "data.eval_batch_size must be a positive integer or null, got 0"),
    ("data.num_workers", -1, "data.num_workers must be an integer ≥ 0, got -1"),
    ("data.num_workers", "two", "data.num_workers must be an integer ≥ 0, got 'two'"),
    ("data.img_size", 0, "data.img_size must be a positive integer, got 0"),
    ("seed", -1, "seed must be an integer in 0..4294967295, got -1"),
    ("trainer.max_epochs", 0, "trainer.max_epochs must be a positive integer, or -1 with trainer.max_steps > 0, got 0"),
    ("trainer.max_epochs", -1, "got -1 (trainer.max_steps=-1)"),  # -1 epochs needs a step limit
    ("trainer.max_steps", 0, "trainer.max_steps must be a positive integer or -1 (no step limit), got 0"),
    ("trainer.check_val_every_n_epoch", 0, "trainer.check_val_every_n_epoch must be a positive integer or null, got 0"),
    ("trainer.log_every_n_steps", -2, "trainer.log_every_n_steps must be a positive integer, got -2"),
    ("callbacks.checkpoint.every_n_epochs", 0, "callbacks.checkpoint.every_n_epochs must be a positive integer or null"),
    ("callbacks.checkpoint.every_n_train_steps", -5, "callbacks.checkpoint.every_n_train_steps must be a positive integer"),
    ("callbacks.plots.num", -1, "callbacks.plots.num must be an integer ≥ 0, got -1"),
    ("optim.lr", -0.1, "optim.lr must be a positive number, got -0.1"),
    ("optim.lr", "fast", "optim.lr must be a positive number, got 'fast'"),
    ("optim.weight_decay", -1, "optim.weight_decay must be a number ≥ 0, got -1"),
    ("sched.warmup_epochs", -1, "sched.warmup_epochs must be a number ≥ 0, got -1"),
    ("sched.warmup_steps", 1.5, "sched.warmup_steps must be an integer ≥ 0 or null, got 1.5"),
])
def test_each_rule_names_the_key_and_the_value(base, key, value, message):
    with pytest.raises(ConfigError) as e:
        validate(_with(base, **{key.replace(".", "__"): value}))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_problem_in_one_line(base):
    with pytest.raises(ConfigError) as e:
        validate(_with(base, data__batch_size=-4, seed=-1, data__img_size="abc"))
    msg = str(e.value)
    assert "\n" not in msg and msg.count(" must be ") == 3


def test_nulls_allowed_where_they_mean_default_or_off(base):
    validate(_with(base, data__eval_batch_size=None, callbacks__checkpoint__every_n_epochs=None,
                   trainer__check_val_every_n_epoch=None))
    validate(_with(base, callbacks__checkpoint=None, callbacks__plots=None))


@pytest.mark.parametrize("override, unknown", [("+eval.test_split=train", "eval"), ("+epochs=3", "epochs"),
                                               ("+data.test_split=train", "data.test_split")])
def test_keys_that_nothing_reads_are_refused_with_the_valid_ones(override, unknown):
    with pytest.raises(ConfigError) as e:
        _validate([override])
    msg = str(e.value)
    assert f"unknown config key(s) {unknown}" in msg and "nothing reads them" in msg
    assert ("data.batch_size" in msg) if unknown.startswith("data.") else ("trainer" in msg and "dataset" in msg)
    if "test_split" in override:
        assert "dataset.splits.test" in msg  # where the split that is scored is set


def test_trainer_arguments_must_exist(base):
    validate(_with(base, trainer__max_time="00:00:01:00", trainer__strategy="ddp"))
    with pytest.raises(ConfigError, match=r"trainer.max_epoch \(did you mean max_epochs"):
        validate(_with(base, trainer__max_epoch=3))


def test_bad_value_exits_2_with_one_line_before_anything_runs(tmp_path):
    proc = run_rsbench(["dataset=eurosat", "backbone=resnet18", *TINY, "data.batch_size=abc"], tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "error: data.batch_size must be a positive integer, got 'abc'" in out
    assert "Traceback" not in out and not list((tmp_path / "results").glob("runs/**/metrics.json"))
