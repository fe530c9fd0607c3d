"""One run: compose → validate → check data and weights → instantiate → fit → test → record.

Everything a user can get wrong (task vs dataset, a missing dataset, a wrong layout, a missing
checkpoint) is checked before a model is built; the error says what was expected where. Errors
after training started leave a run record marked ``failed``. In a multirun sweep a failed run is
recorded and reported, and the sweep goes on. Nothing here names a task or a dataset: the
datamodule, the task, the callbacks and the trainer are whatever the composed config says.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rsbench.config import CONF_DIR
from rsbench.errors import ConfigError, RsbenchError, RunInterrupted

log = logging.getLogger("rsbench")

#: (run label, error) of every run of this process that did not finish; __main__ reports them.
FAILURES: list[tuple[str, str]] = []


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """The Hydra entry: a clear message and exit 2 for a user error; in a sweep, record and go on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return _run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except RunInterrupted as e:  # a sweep stops too: the scheduler wants the job gone
        log.error("\n%s: %s\n", _label(cfg), e)
        FAILURES.append((_label(cfg), str(e)))
        if multirun:
            log.error("the sweep stops here; the members after this one did not run (rerunning the sweep "
                      "skips the finished members and resumes this one)")
        raise SystemExit(e.exit_code) from None
    except RsbenchError as e:
        log.error("\nerror: %s\n", e)
        FAILURES.append((_label(cfg), str(e)))
        if not multirun:
            raise SystemExit(2) from None
    except Exception as e:  # noqa: BLE001 — in a sweep one broken run must not stop the others
        if not multirun:
            raise
        log.exception("run %s failed", _label(cfg))
        FAILURES.append((_label(cfg), f"{type(e).__name__}: {e}"))
    return None


def _run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from hydra.utils import instantiate

    from rsbench.leaderboard import write_leaderboard
    from rsbench.models.weights import resolve_weights
    from rsbench.results import RunRecord

    validate(cfg)
    c = OmegaConf.create(_resolve(cfg))  # one resolved config from here on
    check_backbone(c.backbone.name)
    record = RunRecord(run_dir, OmegaConf.to_container(c), identity(c), write=_is_rank_zero())

    # Checks before any model is built: the data (layout, splits, files) and the weights, all reported at once.
    dm = instantiate(c.datamodule)
    weights = _all_or_nothing(lambda: _prepare(dm), lambda: resolve_weights(
        c.backbone.name, c.backbone.pretrained, c.backbone.weights_dir))[1]
    OmegaConf.update(c, "task.module.backbone.pretrained", str(weights) if weights else None)

    callbacks = {k: instantiate(v) for k, v in (c.get("callbacks") or {}).items() if v and v.get("_target_")}

    def fit_and_test(resume: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        import lightning as L

        L.seed_everything(int(c.seed), workers=True, verbose=False)
        model = instantiate(c.task.module, class_names=dm.class_names or None, _convert_="all")
        logger = instantiate(c.logger) if c.logger.get("_target_") else False
        if logger:
            logger.log_hyperparams(OmegaConf.to_container(c))  # the whole resolved config
        trainer = instantiate(c.trainer, callbacks=list(callbacks.values()), logger=logger,
                              default_root_dir=str(run_dir), enable_checkpointing=False)  # ResumeCheckpoint's
        with _signals_as_interruption(trainer):
            trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)  # plain types and tensors only
            trainer.test(model, datamodule=dm, verbose=False)
        metrics = dict(model.test_results)
        if dm.has_split("predict") and "submission" in callbacks:
            trainer.predict(model, datamodule=dm, return_predictions=False)
            metrics["submission"] = callbacks["submission"].summary(model)
        kept = callbacks["checkpoint"].finalize(model) \
            if record.write and hasattr(callbacks.get("checkpoint"), "finalize") else None
        return metrics, {**_stats(callbacks), "checkpoint": str(kept) if kept else None, "precision": str(trainer.precision),
                         "accelerator": type(trainer.accelerator).__name__, "devices": trainer.num_devices,
                         "world_size": trainer.world_size, "test_split": c.dataset.splits.get("test")}

    rec = record.execute(fit_and_test, checkpoint=run_dir / "checkpoints" / "last.ckpt", force=bool(c.force),
                         progress=lambda: _stats(callbacks))
    if rec.get("skipped"):
        log.info("already finished: %s (force=true reruns it)", record.metrics_path)
    board = None
    if record.write and c.leaderboard and not rec.get("skipped"):
        board = write_leaderboard(c.paths.results_dir, c.paths.runs_dir)["md"]
    if record.write:
        _print_summary(c, rec, record.metrics_path, board)
    return rec


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
    was scored, by whom; and the paper's, from the dataset config), the precision and the split's provenance."""
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
    task, ds = cfg.task.name, cfg.dataset.name
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
    from rsbench.protocol import label, same, server_protocol

    metric = rec.get("metric")
    value = (rec.get("metrics") or {}).get(metric)
    sample = " [GENERATED SAMPLE DATA]" if rec.get("sample_data") else ""
    proto, paper = rec.get("protocol") or {}, rec.get("paper_protocol")
    if same(proto, paper) and proto.get("held_out", True):
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
        lines.append(f"   submission:  {sub.get('dir')} (the paper's protocol, {label(paper)}; after scoring: "
                     f"python -m rsbench.scores add {metrics_path.parent} --metric {metric} --value <score> "
                     f"--source \"{paper.get('server', 'the server')}\")")
    if board:
        lines.append(f"   leaderboard: {board}")
    log.info("\n".join(lines))
