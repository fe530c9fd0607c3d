"""One run: compose → validate → (skip a finished run) → check data and weights → instantiate → fit → test → record.

Everything a user can get wrong (task vs dataset, a missing dataset, a wrong layout, a missing
checkpoint) is checked before a model is built; the error says what was expected where. Errors
after training started leave a run record marked ``failed``. In a multirun sweep a failed run is
recorded and reported, and the sweep goes on. Nothing here names a task or a dataset: the
datamodule, the task, the callbacks and the trainer are whatever the composed config says.

The config is validated before anything is built (:func:`validate`): positive integers where a count
is needed, numbers where a rate is, no top-level or ``data.*`` key that nothing reads, Trainer
arguments that exist; a problem is one line and exit 2. A sweep member that fails before its run
starts (bad config, bad data) still gets a ``failed`` record and a leaderboard line. A job that does
not run (finished, or refused because the folder holds another config's run) leaves that run's
files as they were (Hydra's ``.hydra/*.yaml`` restored, ``run.log`` not appended to). The
leaderboard is written after every run that wrote a record; its failure is a warning, never the
run's.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import numbers
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rsbench.config import CONF_DIR
from rsbench.errors import ConfigError, RsbenchError, RunInterrupted, error_text, unwrap_worker_error

log = logging.getLogger("rsbench")

#: (run label, error) of every run of this process that did not finish; __main__ reports them.
FAILURES: list[tuple[str, str]] = []


@dataclass
class _Job:
    """What one Hydra job did to its run folder: whether it started a run there (``record.started_here``),
    and what the folder held before (so a job that runs nothing leaves it as it was)."""

    run_dir: Path
    record: Any = None
    occupied: bool = False  # the folder held a run (finished or resumable) when the job began
    log_size: int | None = None  # run.log's size then (None: no run.log)
    wrote: list[Path] = field(default_factory=list)

    @classmethod
    def begin(cls, run_dir: Path) -> _Job:
        from rsbench.results import occupies, read_record

        log_file = run_dir / "run.log"
        return cls(run_dir, occupied=occupies(read_record(run_dir / "metrics.json")),
                   log_size=log_file.stat().st_size if log_file.is_file() else None)

    @property
    def started(self) -> bool:
        return bool(self.record is not None and self.record.started_here)

    def leave_untouched(self) -> None:
        """A job that started no run in a folder holding one: Hydra's files back, run.log as it was."""
        if self.started or not self.occupied or not _is_rank_zero():
            return
        from rsbench.results import restore_hydra_files

        try:
            restore_hydra_files(self.run_dir)
            _restore_run_log(self.run_dir / "run.log", self.log_size)
        except OSError as e:
            log.warning("could not restore the files of the run in %s: %s", self.run_dir, e)


def _restore_run_log(path: Path, size: int | None) -> None:
    """Detach the job's file handler of ``path`` (Hydra's job logging) and cut what this job appended."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.absolute():
            root.removeHandler(h)
            h.close()
    if size is None:
        path.unlink(missing_ok=True)
    elif path.is_file() and path.stat().st_size > size:
        with path.open("r+b") as f:
            f.truncate(size)


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """The Hydra entry: a clear message and exit 2 for a user error; in a sweep, record and go on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    one_console_line_each()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    job = _Job.begin(Path(HydraConfig.get().runtime.output_dir))
    try:
        return _run(cfg, job)
    except RunInterrupted as e:  # a sweep stops too: the scheduler wants the job gone
        log.error("\n%s: %s\n", _label(cfg), e)
        FAILURES.append((_label(cfg), str(e)))
        if multirun:
            not_run = members_not_run()
            log.error("the sweep stops here; %s (rerunning the sweep skips the finished members and resumes "
                      "this one)", f"{len(not_run)} member(s) did not run:\n  - " + "\n  - ".join(not_run)
                      if not_run else "the members after this one did not run")
        raise SystemExit(e.exit_code) from None
    except RsbenchError as e:
        e = unwrap_worker_error(e)
        log.error("\nerror: %s\n", error_text(e).split(": ", 1)[-1])
        _failed(cfg, job, e, multirun)
        if not multirun:
            raise SystemExit(2) from None
    except Exception as e:  # in a sweep one broken run must not stop the others
        if not multirun:
            raise
        log.exception("run %s failed", _label(cfg))
        _failed(cfg, job, e, multirun)
    finally:
        job.leave_untouched()
    return None


def _failed(cfg: DictConfig, job: _Job, e: BaseException, multirun: bool) -> None:
    """List the failure for the summary; in a sweep, a record for a member that failed before its run
    started; the leaderboard rewritten when this job wrote a record."""
    from rsbench.results import write_failure_before_start

    FAILURES.append((_label(cfg), error_text(e)))
    if not _is_rank_zero():
        return
    wrote = job.started
    if multirun and not job.started:
        ident = job.record.identity if job.record is not None else _plain_identity(cfg)
        try:
            wrote = write_failure_before_start(job.run_dir, ident, e) is not None
        except OSError as err:
            log.warning("could not write the failure's record into %s: %s", job.run_dir, err)
    if wrote:
        _update_leaderboard(cfg)


def _plain_identity(cfg: DictConfig) -> dict[str, Any]:
    """The run's names for a record, read one by one (the config may not resolve as a whole)."""
    def get(key: str) -> Any:
        try:
            v = OmegaConf.select(cfg, key, default=None)
        except OmegaConfBaseException:
            return None
        return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)

    return {"task": get("task.name"), "dataset": get("dataset.name"), "backbone": get("backbone.name"),
            "tag": get("tag"), "seed": get("seed"), "metric": get("task.metric")}


def _update_leaderboard(c: DictConfig) -> Path | None:
    """Rewrite the leaderboard; any failure of it is a warning (a run's status is its own)."""
    from rsbench.leaderboard import write_leaderboard

    try:
        switch = OmegaConf.select(c, "leaderboard", default=True)
        if not switch:
            return None
        out = write_leaderboard(OmegaConf.select(c, "paths.results_dir"), OmegaConf.select(c, "paths.runs_dir"))
        if str(switch).lower() == "wandb":  # leaderboard=wandb: also logged as a wandb Table (offline by default)
            from rsbench.tracking import log_leaderboard

            log_leaderboard(OmegaConf.select(c, "paths.results_dir"))
        return out["md"]
    except Exception as e:  # noqa: BLE001 — the leaderboard never changes the status of a run
        log.warning("warning: the leaderboard was not updated: %s", error_text(e).split(": ", 1)[-1])
        return None


def one_console_line_each() -> None:
    """Lightning's ``lightning`` logger has its own console handler ("INFO: ...", stderr) and also passes its
    records on to the root logger, whose console handler (Hydra's job logging) prints them again: with a
    root handler in place, Lightning's own is removed."""
    import lightning  # noqa: F401 — its import adds the handler

    if not logging.getLogger().handlers:
        return
    lg = logging.getLogger("lightning")
    for h in list(lg.handlers):
        if type(h) is logging.StreamHandler:
            lg.removeHandler(h)


def members_not_run(argv: list[str] | None = None, job_num: int | None = None) -> list[str]:
    """The sweep members after this job (``hydra.job.num``), by the values their overrides sweep, from the
    command line as Hydra's basic sweeper expands it; empty when that cannot be worked out."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra._internal.utils import get_args_parser
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if job_num is None:
            from hydra.core.hydra_config import HydraConfig

            job_num = int(HydraConfig.get().job.num)
        args = get_args_parser().parse_args(sys.argv[1:] if argv is None else argv)
        parsed = OverridesParser.create().parse_overrides(args.overrides)
        swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
        jobs = BasicSweeper.split_arguments(parsed, None)[0]
    except Exception:  # noqa: BLE001 — a summary line, never an error of its own
        return []
    return [" ".join(o for o in job if o.split("=", 1)[0] in swept) or " ".join(job) for job in jobs[job_num + 1:]]


def _run(cfg: DictConfig, job: _Job) -> dict[str, Any]:
    from rsbench.models.weights import resolve_weights
    from rsbench.results import RunRecord

    run_dir = job.run_dir
    validate(cfg)
    c = OmegaConf.create(_resolve(cfg))  # one resolved config from here on
    if "target" not in c.backbone:  # backbone=custom (an import path) is checked below, before the data
        check_backbone(c.backbone.name)
    record = job.record = RunRecord(run_dir, OmegaConf.to_container(c), identity(c), write=_is_rank_zero())
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    action, prev = record.plan(checkpoint, force=bool(c.force))  # before the data checks: a finished run is skipped
    if action == "skip":
        log.info("already finished: %s (force=true reruns it)", record.metrics_path)
        rec = {**prev, "skipped": True}
        if record.write:
            _print_summary(c, rec, record.metrics_path, None)
        return rec

    if action == "resume":
        check_resume_checkpoint(checkpoint)  # a truncated last.ckpt is one clear error, before anything is built

    if "target" in c.backbone:  # your own encoder: importable, meets the contract, its weights there (exit 2)
        from rsbench.models.backbones.custom import check_custom_backbone
        check_custom_backbone(c)
    # Checks before any model is built: the data (layout, splits, files) and the weights, all reported at once.
    dm = _instantiate(c.datamodule)
    weights = _all_or_nothing(lambda: _prepare(dm), lambda: resolve_weights(
        c.backbone.name, c.backbone.pretrained, c.backbone.weights_dir))[1]
    OmegaConf.update(c, "task.module.backbone.pretrained", str(weights) if weights else None)

    callbacks = {k: _instantiate(v) for k, v in (c.get("callbacks") or {}).items() if v and v.get("_target_")}

    # The model (and with it the pretrained weights: an unreadable file, a state dict of another model) is
    # built before the run's record starts, so a bad checkpoint is an error before training (exit 2) that
    # leaves no record behind; seeded first, so its initialisation is the seed's.
    import lightning as L

    L.seed_everything(int(c.seed), workers=True, verbose=False)
    model = _instantiate(c.task.module, class_names=dm.class_names or None, _convert_="all")

    def fit_and_test(resume: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        logger = _instantiate(c.logger, **_logger_resume(c, run_dir, resume, record.write)) \
            if c.logger.get("_target_") else False
        if logger:
            logger.log_hyperparams(OmegaConf.to_container(c))  # the whole resolved config
        trainer = _instantiate(c.trainer, callbacks=list(callbacks.values()), logger=logger,
                               default_root_dir=str(run_dir), enable_checkpointing=False)  # ResumeCheckpoint's
        batch = dm.batch_plan(trainer.world_size)  # the recipe's total batch on this many processes
        trainer.accumulate_grad_batches = batch["accumulate"]
        log.info("batch: %d in total = %d per process x %d process(es) x %d accumulation step(s)",
                 batch["total"], batch["per_device"], batch["world"], batch["accumulate"])
        failed = True
        try:
            with _signals_as_interruption(trainer):
                trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)  # plain types and tensors only
                trainer.test(model, datamodule=dm, verbose=False)
            failed = False
        finally:  # finished, failed or interrupted: <run>/curves.png of the steps so far (a warning at worst)
            if record.write and hasattr(callbacks.get("curves"), "draw"):
                callbacks["curves"].draw(trainer)
            _finish_wandb(logger, failed)
        metrics = dict(model.test_results)
        warnings = _missing_metric(c, metrics)
        if dm.has_split("predict") and "submission" in callbacks:
            trainer.predict(model, datamodule=dm, return_predictions=False)
            metrics["submission"] = callbacks["submission"].summary(model)
        kept = callbacks["checkpoint"].finalize(model) \
            if record.write and hasattr(callbacks.get("checkpoint"), "finalize") else None
        return metrics, {**_stats(callbacks), "checkpoint": str(kept) if kept else None, "precision": str(trainer.precision),
                         "accelerator": type(trainer.accelerator).__name__, "devices": trainer.num_devices,
                         "world_size": trainer.world_size, "batch": batch, "test_split": c.dataset.splits.get("test"),
                         "train_subset": getattr(dm, "train_subset", None),
                         "parameters": getattr(model, "parameter_counts", lambda: None)(),
                         **({"warnings": warnings} if warnings else {})}

    rec = record.execute(fit_and_test, checkpoint=checkpoint, force=bool(c.force), progress=lambda: _stats(callbacks))
    if rec.get("skipped"):
        log.info("already finished: %s (force=true reruns it)", record.metrics_path)
    board = _update_leaderboard(c) if record.write and not rec.get("skipped") else None
    if record.write:
        try:
            _print_summary(c, rec, record.metrics_path, board)
        except Exception as e:  # noqa: BLE001 — the run is recorded; its summary is a courtesy
            log.warning("warning: no summary: %s", error_text(e))
    return rec


def _logger_resume(c: DictConfig, run_dir: Path, resume: str | None, write: bool) -> dict[str, Any]:
    """Arguments that make a resumed run continue its wandb run (rsbench.tracking.wandb_run_id)."""
    if not str(c.logger.get("_target_", "")).endswith("WandbLogger") or c.logger.get("id"):
        return {}
    from rsbench.tracking import wandb_run_id

    return {"id": wandb_run_id(run_dir, resume is not None, write), "resume": "allow"}


def _finish_wandb(logger: Any, failed: bool) -> None:
    """End the run's wandb run with the run (logger=wandb): in a multirun whose members share a process (Hydra's
    basic launcher) the next member's WandbLogger would otherwise log into this one's. A warning at worst."""
    experiment = getattr(logger, "_experiment", None)
    if experiment is None or not hasattr(experiment, "finish"):
        return
    try:
        experiment.finish(exit_code=1 if failed else 0)
    except Exception as e:  # noqa: BLE001 — the tracker never changes the status of a run
        log.warning("warning: the wandb run did not finish cleanly: %s", error_text(e))


def _missing_metric(c: DictConfig, metrics: dict[str, Any]) -> list[str]:
    """A warning (logged, and kept in the record) when the headline metric is None: e.g. mIoU on a test
    split without a labelled pixel, F1 without a changed pixel."""
    metric = c.task.metric
    if metrics.get(metric) is not None:
        return []
    msg = (f"{metric} = None: the test split '{c.dataset.splits.get('test')}' gives no value (no labelled pixels, or "
           f"no pixel of a class the metric needs); recorded as null, the leaderboard shows –")
    log.warning("warning: %s", msg)
    return [msg]


@contextmanager
def _signals_as_interruption(trainer):
    """Lightning turns SIGTERM into ``SIGTERMException`` (exit 0) and Ctrl-C into ``exit(1)``; both
    become :class:`RunInterrupted` (after ``ResumeCheckpoint`` saved the state), so the record says
    ``interrupted`` and the process exits 143 / 130."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except SIGTERMException as e:
        raise RunInterrupted("SIGTERM") from e
    except SystemExit as e:
        if trainer.interrupted:
            raise RunInterrupted("SIGINT") from e
        raise


def _prepare(dm) -> None:
    dm.prepare_data()
    dm.check()


def _instantiate(node: Any, **kw: Any) -> Any:
    """Hydra's ``instantiate``, with an rsbench error raised while building (a bad checkpoint, a bad option)
    passed on as itself, not wrapped in Hydra's ``InstantiationException`` (which would exit 1 with
    "Error in call to target ..." instead of rsbench's message and exit 2)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kw)
    except InstantiationException as e:
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, RsbenchError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def check_resume_checkpoint(path: Path) -> None:
    """The resume checkpoint reads (``weights_only``, memory-mapped: cheap whatever its size) and is a
    Lightning training checkpoint; else a :class:`CheckpointError` naming it and saying how to restart."""
    import torch

    from rsbench.errors import CheckpointError
    from rsbench.models.checkpoint import describe_unreadable

    restart = (f"The run cannot continue from it. Rerun the same command with force=true to start this run again "
               f"from its first step (this deletes {path.parent}), or put back an intact copy of the file.")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as e:  # noqa: BLE001 — re-raised naming the file
        raise CheckpointError(f"the resume checkpoint {path} cannot be read: {describe_unreadable(path, e)}. "
                              f"{restart}") from None
    missing = [k for k in ("state_dict", "loops", "optimizer_states")
               if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"the resume checkpoint {path} is not a training checkpoint of rsbench/Lightning "
                              f"(it lacks {', '.join(missing)}). {restart}")


def _stats(callbacks: dict[str, Any]) -> dict[str, Any]:
    stats = callbacks.get("stats")
    return stats.summary() if stats is not None else {}


def _all_or_nothing(*checks) -> list[Any]:
    """Run every check; raise one error listing every problem, or return their results."""
    problems: list[RsbenchError] = []
    results: list[Any] = []
    for check in checks:
        try:
            results.append(check())
        except RsbenchError as e:
            problems.append(e)
            results.append(None)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise type(problems[0])("\n".join(f"({i}) {p}" for i, p in enumerate(problems, 1)))
    return results


def identity(c: DictConfig) -> dict[str, Any]:
    """What a run is, for the record and the leaderboard: who, the protocol (which split trained, which
    was scored, by whom; and the paper's, from the dataset config), the precision, the split's provenance and
    the training regime (``finetune``: full | frozen; ``label_fraction`` of the train split and its seed)."""
    from rsbench.data.samples import is_sample
    from rsbench.protocol import paper_protocol, precision_label, run_protocol, split_source

    pretrained = c.backbone.pretrained
    sample = bool(c.dataset.get("sample")) or is_sample(c.dataset.root)
    return {
        "task": c.task.name, "dataset": c.dataset.name, "backbone": c.backbone.name,
        "pretrain": str(c.backbone.pretrain) if pretrained not in (None, "none", "") else "none",
        "tag": c.tag, "seed": c.seed, "metric": c.task.metric,
        "sample_data": sample,
        "protocol": run_protocol(c.dataset), "paper_protocol": paper_protocol(c.dataset),
        "precision": precision_label(OmegaConf.select(c, "trainer.precision", default=None)),
        "split_source": split_source(c.dataset, sample),
        "finetune": str(OmegaConf.select(c, "finetune.name", default=None) or "full"),
        "label_fraction": float(OmegaConf.select(c, "data.label_fraction", default=None) or 1.0),
        "fraction_seed": int(OmegaConf.select(c, "data.fraction_seed", default=None) or 0),
    }


def _dataset_task(path: Path) -> str | None:
    """The ``task`` of a dataset config, following the configs it inherits from (``defaults``)."""
    cfg = OmegaConf.load(path)
    if "task" in cfg:
        return str(cfg.task)
    for entry in cfg.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and (path.parent / f"{entry}.yaml").is_file():
            task = _dataset_task(path.parent / f"{entry}.yaml")
            if task:
                return task
    return None


def datasets_by_task() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in sorted((CONF_DIR / "dataset").glob("*.yaml")):
        if not p.stem.startswith("_") and (task := _dataset_task(p)):
            out.setdefault(task, []).append(p.stem)
    return out


def validate(cfg: DictConfig) -> None:
    """Refuse a config that would run other than it says, before anything is built (each a ConfigError)."""
    task, ds = cfg.task.name, cfg.dataset.name
    check_keys(cfg)
    check_values(cfg)
    if OmegaConf.select(cfg, "optim.lr", default=None) is None:
        raise ConfigError(f"no learning rate for task={task} with backbone={cfg.backbone.name}: set "
                          f"backbone.recipe.lr.{task}=... (conf/backbone/) or task.lr=... (conf/task/{task}.yaml)")
    if cfg.dataset.task != task:
        by_task = datasets_by_task()
        raise ConfigError(
            f"dataset={ds} is a {cfg.dataset.task!r} dataset, but task={task}. "
            f"task={task} takes: {', '.join(by_task.get(task, [])) or '(none yet)'}; "
            f"or leave task= out and it follows the dataset."
        )
    check_trainer_args(cfg)


@functools.cache
def known_keys() -> tuple[frozenset[str], frozenset[str]]:
    """(top-level keys, ``data.*`` keys) of the composed config: conf/config.yaml's own keys and the config
    groups of its defaults list. Nothing reads any other top-level or ``data`` key."""
    primary = OmegaConf.load(CONF_DIR / "config.yaml")
    groups = set()
    for entry in primary.get("defaults") or []:
        name = entry if isinstance(entry, str) else next(iter(entry), "")
        name = name.removeprefix("optional ").removeprefix("override ").strip()
        group = name.split("@")[-1].split("/")[0]
        if not name.startswith("hydra") and name != "_self_":
            groups |= _global_keys(group) if _global_group(group) else {group}
    top = {k for k in primary if k != "defaults"} | groups | {"hydra"}
    return frozenset(top), frozenset(primary.get("data") or {})


def _global_group(group: str) -> bool:
    """A config group whose files are ``# @package _global_`` (recipe, experiment): it adds no key of its name."""
    files = sorted((CONF_DIR / group).glob("*.yaml"))
    return bool(files) and all("@package _global_" in f.read_text().split("\n", 1)[0] for f in files)


def _global_keys(group: str) -> set[str]:
    """The top-level keys the files of a ``_global_`` group set (protocol/*.yaml sets ``protocol``)."""
    return {k for f in (CONF_DIR / group).glob("*.yaml") for k in (OmegaConf.load(f) or {}) if k != "defaults"}


#: where a key that does nothing has a real counterpart
_INSTEAD = {"eval": "the split that is scored is dataset.splits.test=<split>",
            "test_split": "the split that is scored is dataset.splits.test=<split>"}


def check_keys(cfg: DictConfig) -> None:
    """Refuse top-level and ``data.*`` keys that nothing reads (e.g. ``+eval.test_split=train``)."""
    top, data = known_keys()
    unknown = [k for k in cfg if k not in top]
    node = cfg.get("data")
    unknown += [f"data.{k}" for k in (node if isinstance(node, DictConfig) else []) if k not in data]
    if not unknown:
        return
    hints = sorted({_INSTEAD[k.split(".")[-1]] for k in unknown if k.split(".")[-1] in _INSTEAD}
                   | {_INSTEAD[k.split(".")[0]] for k in unknown if k.split(".")[0] in _INSTEAD})
    where = sorted(top) if any("." not in k for k in unknown) else sorted(f"data.{k}" for k in data)
    raise ConfigError(f"unknown config key(s) {', '.join(unknown)}{_from_overrides(unknown)}: nothing reads them, "
                      f"so they would change nothing{' (' + '; '.join(hints) + ')' if hints else ''}. "
                      f"Valid keys: {', '.join(where)}")


def _from_overrides(keys: list[str]) -> str:
    """`` (from +eval.test_split=train)``: the command-line overrides that added ``keys``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 — no Hydra app (a test): no provenance
        return ""
    hits = [o for o in task if any(o.lstrip("+~").split("=", 1)[0] == k or o.lstrip("+~").startswith(f"{k}.")
                                   for k in keys)]
    return f" (from {' '.join(hits)})" if hits else ""


_UNSET = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


#: (key, test, what it must be, may be null)
_VALUE_RULES: tuple[tuple[str, Any, str, bool], ...] = (
    ("data.batch_size", lambda v: _is_int(v) and v > 0, "a positive integer", False),
    ("data.eval_batch_size", lambda v: _is_int(v) and v > 0, "a positive integer or null", True),
    ("data.per_device_batch", lambda v: _is_int(v) and v > 0, "a positive integer or null", True),
    ("trainer.accumulate_grad_batches", lambda v: v == 1 and _is_int(v),
     "1 (data.batch_size is the total batch; data.per_device_batch caps a process's share and sets the accumulation)",
     True),
    ("data.num_workers", lambda v: _is_int(v) and v >= 0, "an integer ≥ 0", False),
    ("data.img_size", lambda v: _is_int(v) and v > 0, "a positive integer", False),
    ("data.full_check_max_samples", lambda v: _is_int(v) and v >= 0, "an integer ≥ 0", True),
    ("data.label_fraction", lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1], e.g. 0.01, 0.1 or 1.0", False),
    ("data.fraction_seed", lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in 0..4294967295", False),
    ("seed", lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in 0..4294967295", False),
    ("trainer.max_steps", lambda v: _is_int(v) and (v > 0 or v == -1), "a positive integer or -1 (no step limit)", True),
    ("trainer.check_val_every_n_epoch", lambda v: _is_int(v) and v > 0, "a positive integer or null", True),
    ("trainer.log_every_n_steps", lambda v: _is_int(v) and v > 0, "a positive integer", True),
    ("callbacks.checkpoint.every_n_epochs", lambda v: _is_int(v) and v > 0, "a positive integer or null", True),
    ("callbacks.checkpoint.every_n_train_steps", lambda v: _is_int(v) and v > 0, "a positive integer or null", True),
    ("callbacks.plots.num", lambda v: _is_int(v) and v >= 0, "an integer ≥ 0", True),
    ("optim.lr", lambda v: _is_num(v) and v > 0, "a positive number", True),
    ("optim.weight_decay", lambda v: _is_num(v) and v >= 0, "a number ≥ 0", True),
    ("sched.warmup_epochs", lambda v: _is_num(v) and v >= 0, "a number ≥ 0", True),
    ("sched.warmup_steps", lambda v: _is_int(v) and v >= 0, "an integer ≥ 0 or null", True),
)


def _value(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=_UNSET)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{key} cannot be resolved: {e}") from e


def check_values(cfg: DictConfig) -> None:
    """Counts are integers, rates numbers, in range; every problem named in one line."""
    problems = []
    for key, ok, what, nullable in _VALUE_RULES:
        v = _value(cfg, key)
        if v is _UNSET or (v is None and nullable):
            continue
        if not ok(v):
            problems.append(f"{key} must be {what}, got {v!r}")
    epochs, steps = _value(cfg, "trainer.max_epochs"), _value(cfg, "trainer.max_steps")
    if epochs is not _UNSET:
        by_steps = _is_int(steps) and steps > 0
        if not ((_is_int(epochs) and epochs > 0) or (epochs in (None, -1) and not isinstance(epochs, bool) and by_steps)):
            problems.append(f"trainer.max_epochs must be a positive integer, or -1 with trainer.max_steps > 0, "
                            f"got {epochs!r}" + (f" (trainer.max_steps={steps!r})" if epochs in (None, -1) else ""))
    if problems:
        raise ConfigError("; ".join(problems))


def check_trainer_args(cfg: DictConfig) -> None:
    """Every ``trainer.*`` key is an argument of Lightning's Trainer (a typo is named, with the closest ones)."""
    node = cfg.get("trainer")
    if not isinstance(node, DictConfig) or node.get("_target_") not in ("lightning.pytorch.Trainer", "lightning.Trainer"):
        return
    from lightning.pytorch import Trainer

    params = set(inspect.signature(Trainer.__init__).parameters) - {"self"}
    unknown = [k for k in node if not str(k).startswith("_") and k not in params]
    if unknown:
        close = {k: difflib.get_close_matches(str(k), params, n=2) for k in unknown}
        said = "; ".join(f"trainer.{k}" + (f" (did you mean {' or '.join(v)}?)" if v else "") for k, v in close.items())
        raise ConfigError(f"not an argument of lightning.pytorch.Trainer: {said}")


def check_backbone(name: str) -> None:
    import timm

    from rsbench.models import BACKBONES

    if name not in BACKBONES and name not in timm.list_models():
        raise ConfigError(
            f"unknown backbone {name!r}: rsbench backbones are {', '.join(BACKBONES.names())}; "
            "any timm model name also works with backbone=timm backbone.name=<name>"
        )


def _label(cfg: DictConfig) -> str:
    return f"{cfg.task.name}/{cfg.dataset.name}/{cfg.backbone.name} tag={cfg.tag} seed={cfg.seed}"


def _resolve(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise ConfigError(f"configuration cannot be resolved: {e}") from e


def _is_rank_zero() -> bool:
    """False in the extra processes DDP starts (they re-run this entry point with a rank set)."""
    from lightning.fabric.utilities.rank_zero import _get_rank

    return (_get_rank() or 0) == 0


def _print_summary(c: DictConfig, rec: dict[str, Any], metrics_path: Path, board: Path | None) -> None:
    from rsbench.protocol import label, paper_regime, regime, same, server_protocol

    metric = rec.get("metric")
    value = (rec.get("metrics") or {}).get(metric)
    sample = " [GENERATED SAMPLE DATA]" if rec.get("sample_data") else ""
    proto, paper = rec.get("protocol") or {}, rec.get("paper_protocol")
    if not paper_regime(rec):
        finetune, labels = regime(rec)
        compared = (f"finetune={finetune}, labels {labels}: not the paper's full finetuning on every label, "
                    f"not compared")
    elif same(proto, paper) and proto.get("held_out", True):
        compared = "the paper's protocol: compared with the paper"
    else:
        seen = "" if proto.get("held_out", True) else f"; '{proto.get('test')}' was trained on"
        compared = f"not the paper's ({label(paper)}): not compared{seen}"
    lines = [
        "",
        f"== rsbench {c.task.name} / {c.dataset.name} / {c.backbone.name} (tag {c.tag}, seed {c.seed}){sample}",
        f"   {metric} = {value:.2f}  on split '{rec.get('test_split')}', after {rec.get('epochs')} epochs"
        if isinstance(value, (int, float)) else f"   {metric} = {value}",
        f"   protocol:    {label(proto)}, {compared}",
        f"   precision:   {rec.get('precision')}   split: {rec.get('split_source')}",
        f"   run record:  {metrics_path}",
    ]
    sub = (rec.get("metrics") or {}).get("submission")
    if sub and same(server_protocol(proto), paper):
        upload = (sub.get("merged") or {}).get("zip") or sub.get("dir")
        lines.append(f"   submission:  {upload} (the paper's protocol, {label(paper)}; after scoring: "
                     f"python -m rsbench.scores add {metrics_path.parent} --metric {metric} --value <score> "
                     f"--source \"{paper.get('server', 'the server')}\")")
    if board:
        lines.append(f"   leaderboard: {board}")
    log.info("\n".join(lines))
