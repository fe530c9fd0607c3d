"""One run: compose → validate → instantiate → fit → test → record → leaderboard.

Everything a user can get wrong (task vs dataset, a missing dataset, a wrong layout, a missing
checkpoint) is checked before a model is built; the error says what was expected where. Errors
after training started leave a run record marked ``failed``. In a multirun sweep a failed run is
recorded and reported, and the sweep goes on.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rsbench.config import CONF_DIR
from rsbench.errors import ConfigError, RsbenchError

log = logging.getLogger("rsbench")

#: (run label, error) of every run of this process that did not finish; __main__ reports them.
FAILURES: list[tuple[str, str]] = []


def datasets_by_task() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in sorted((CONF_DIR / "dataset").glob("*.yaml")):
        task = OmegaConf.load(p).get("task")
        out.setdefault(str(task), []).append(p.stem)
    return out


def validate(cfg: DictConfig) -> None:
    task, ds = cfg.task.name, cfg.dataset.name
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


def run(cfg: DictConfig) -> dict[str, Any] | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    try:
        return _run(cfg, run_dir)
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


def _resolve(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise ConfigError(f"configuration cannot be resolved: {e}") from e


def _run(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    from rsbench.callbacks import RunStats
    from rsbench.data.datamodule import RSDataModule
    from rsbench.data.samples import SAMPLE_NOTE, is_sample, write_sample
    from rsbench.leaderboard import write_leaderboard
    from rsbench.models.weights import resolve_weights
    from rsbench.results import RunRecord

    validate(cfg)
    resolved = _resolve(cfg)
    check_backbone(resolved["backbone"]["name"])
    c = OmegaConf.create(resolved)
    pretrained = c.backbone.pretrained
    identity = {
        "task": c.task.name, "dataset": c.dataset.name, "backbone": c.backbone.name,
        "pretrain": str(c.backbone.pretrain_tag) if pretrained not in (None, "none", "") else "none",
        "tag": c.tag, "seed": c.seed, "metric": c.task.metric,
        "sample_data": bool(c.dataset.get("sample")) or is_sample(c.dataset.root),
    }
    rank_zero = _is_rank_zero()
    record = RunRecord(run_dir, resolved, identity, write=rank_zero)

    # A finished run with the same config is not run twice; an unfinished one resumes.
    ckpt_last = run_dir / "checkpoints" / "last.ckpt"
    resume = None
    prev = record.existing()
    if prev and prev.get("status") not in (None, "unreadable") and not c.force:
        if prev.get("config_hash") != record.hash:
            raise ConfigError(
                f"{run_dir} holds a run of this task/dataset/backbone/tag/seed with a different config. "
                f"Give this one its own tag=... (e.g. tag=lr1e-4) or overwrite with force=true."
            )
        if prev["status"] == "ok":
            log.info("already finished: %s (force=true reruns it)", record.metrics_path)
            _print_summary(c, prev, record.metrics_path, None)
            return prev
        if ckpt_last.is_file():
            resume = str(ckpt_last)
            log.info("resuming the unfinished run from %s", ckpt_last)
    elif c.force and rank_zero and (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")

    if c.dataset.get("sample"):
        root = Path(c.dataset.root)
        if not is_sample(root) and rank_zero:
            if root.exists() and any(root.iterdir()):
                raise ConfigError(f"dataset.sample=true but {root} already holds other files; "
                                  "point dataset.root at an empty folder")
            write_sample(c.dataset.name, root, seed=0, **dict(c.dataset.get("sample_kwargs") or {}))
        log.info("NOTE: %s\n      %s written to %s", SAMPLE_NOTE, c.dataset.name, root)

    # Checks before any model is built: the data (layout, splits, files) and the weights.
    transforms = instantiate(cfg.task.transforms) if cfg.task.get("transforms") else None
    dm = RSDataModule(
        name=c.dataset.name, root=c.dataset.root, splits=c.dataset.splits, transforms=transforms,
        batch_size=c.data.batch_size, eval_batch_size=c.data.eval_batch_size, num_workers=c.data.num_workers,
        normalize=c.dataset.get("normalize", c.data.normalize),
        dataset_kwargs=c.dataset.get("kwargs") or {},
        transform_kwargs={"img_size": c.data.img_size, "in_chans": c.dataset.in_chans,
                          "scale_to_unit": c.dataset.get("scale_to_unit", 255.0),
                          **dict(c.data.get("transform_kwargs") or {})},
        cache_dir=Path(c.paths.cache_dir) / "stats", image_key=c.task.get("image_key", "image"),
    )
    problems: list[RsbenchError] = []
    weights = None
    for check in (dm.prepare, lambda: resolve_weights(c.backbone.name, pretrained, c.backbone.weights_dir)):
        try:
            result = check()
        except RsbenchError as e:
            problems.append(e)
        else:
            weights = result if result is not None else weights
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise type(problems[0])("\n".join(f"({i}) {p}" for i, p in enumerate(problems, 1)))

    record.start()
    stats_cb = RunStats()
    try:
        L.seed_everything(int(c.seed), workers=True, verbose=False)
        model = instantiate(
            cfg.task.module,
            backbone={"name": c.backbone.name, "pretrained": str(weights) if weights else None,
                      "allow_missing": c.backbone.allow_missing, "kwargs": dict(c.backbone.kwargs or {}),
                      "variant": c.task.get("backbone_variant")},
            num_classes=c.dataset.num_classes, class_names=list(getattr(dm.raw["train"], "classes", []) or []),
            optim=dict(c.optim), sched=dict(c.sched), img_size=c.data.img_size, in_chans=c.dataset.in_chans,
            run_dir=str(run_dir), eval_cfg=dict(c.eval), **dict(c.task.get("kwargs") or {}),
            _recursive_=False,
        )
        logger = instantiate(cfg.logger) if cfg.logger.get("_target_") else False
        if logger:
            logger.log_hyperparams(resolved)  # the whole resolved config, not just the module's arguments
        ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
                               **dict(c.checkpoint))
        trainer = instantiate(cfg.trainer, callbacks=[stats_cb, ckpt], logger=logger, default_root_dir=str(run_dir))
        trainer.fit(model, datamodule=dm, ckpt_path=resume)
        trainer.test(model, datamodule=dm, verbose=False)
        metrics = dict(model.test_results)
        stats = {**stats_cb.summary(), "precision": str(trainer.precision), "accelerator": type(trainer.accelerator).__name__,
                 "devices": trainer.num_devices, "world_size": trainer.world_size,
                 "test_split": c.dataset.splits.get("test"), "resumed_from": resume}
        rec = record.finish(metrics, stats)
    except BaseException as e:
        record.fail(e, stats_cb.summary())
        raise
    board = None
    if not rank_zero:
        return rec
    if c.leaderboard:
        board = write_leaderboard(c.paths.results_dir, c.paths.runs_dir)["md"]
    _print_summary(c, rec, record.metrics_path, board)
    return rec


def _is_rank_zero() -> bool:
    """False in the extra processes DDP starts (they re-run this entry point with a rank set)."""
    from lightning.fabric.utilities.rank_zero import _get_rank

    return (_get_rank() or 0) == 0


def _print_summary(c: DictConfig, rec: dict[str, Any], metrics_path: Path, board: Path | None) -> None:
    metric = rec.get("metric")
    value = (rec.get("metrics") or {}).get(metric)
    sample = " [GENERATED SAMPLE DATA]" if rec.get("sample_data") else ""
    lines = [
        "",
        f"== rsbench {c.task.name} / {c.dataset.name} / {c.backbone.name} (tag {c.tag}, seed {c.seed}){sample}",
        f"   {metric} = {value:.2f}  on split '{rec.get('test_split')}', after {rec.get('epochs')} epochs"
        if isinstance(value, (int, float)) else f"   {metric} = {value}",
        f"   run record:  {metrics_path}",
    ]
    if board:
        lines.append(f"   leaderboard: {board}")
    log.info("\n".join(lines))
