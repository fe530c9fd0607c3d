"""One LightningDataModule for every dataset.

It knows datasets only through the registry (:func:`build_dataset`) and the task only through
one hook of the LightningModule it serves: ``collate_fn`` (how samples become a batch; default
``torch.utils.data.default_collate``). A dataset may define ``training_view()``, the dataset as
training reads it (detection: MMDetection's ``filter_empty_gt``); the other stages read it whole.
``label_fraction`` < 1 then keeps a seeded subset of that view, saved as a split file in the run folder
(:mod:`rsbench.data.fractions`). Batch sizes are given in total over all devices (the paper's convention). Building the raw datasets checks the layout and every split,
so :meth:`RSDataModule.check` is what the run calls before any model is built.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from rsbench.constants import IMAGENET_MEAN, IMAGENET_STD
from rsbench.data.registry import build_dataset
from rsbench.data.packing import unpack_lists
from rsbench.data.stats import band_stats
from rsbench.errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test", "predict")
#: splits of at most this many samples are read in full before training (``data.full_check_max_samples``)
FULL_CHECK_MAX_SAMPLES = 1000


def _discard(batch: Any) -> None:
    """The collate of the full read before training: the samples were read; nothing is kept."""
    return None


class Transformed(Dataset):
    """A view of ``base`` with ``transform`` applied to each sample dict."""

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.base[i]
        return self.transform(s) if self.transform is not None else s


def init_worker(_worker_id: int, *, opencv_threads: int = 0) -> None:
    """A DataLoader worker's setup: OpenCV's own thread pool set to ``opencv_threads`` (0: none, each call
    on the worker's thread), as MMEngine sets it for the official code's workers (``env_cfg.mp_cfg``,
    ``opencv_num_threads=0``). The workers already take the cores; a pool of OpenCV threads in each of them
    oversubscribes them (torch's own threads are set to 1 in workers by the DataLoader). Results do not
    depend on it (OpenCV's parallel loops split rows)."""
    import cv2

    cv2.setNumThreads(int(opencv_threads))


class RSDataModule(L.LightningDataModule):
    """Datasets of ``splits`` (stage → the dataset's split name) with the task's transforms.

    ``transforms`` is a factory ``f(mean=, std=, img_size=, in_chans=, scale_to_unit=, **kw)``
    returning ``{"train": callable, "eval": callable}`` (the task config's ``transforms`` node), optionally
    with ``"after_transfer"``: what :meth:`on_after_batch_transfer` applies to each batch on its device
    (the normalisation of uint8 images, and for segmentation and change detection the padding's zeros and
    the masks' cast); ``opencv_threads``: OpenCV's thread pool in each worker (:func:`init_worker`);
    ``sharing_strategy``: how workers hand tensors over (``torch.multiprocessing``; None: torch's default,
    ``file_system`` where the default runs out of file descriptors);
    ``sample=True`` writes rsbench's generated copy of the dataset to ``root`` in
    :meth:`prepare_data` (the demo and the tests).
    """

    def __init__(
        self,
        *,
        dataset: str,
        root: str | Path,
        splits: Mapping[str, str | None],
        transforms: Callable[..., dict[str, Callable]] | None = None,
        batch_size: int,
        per_device_batch: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        normalize: str | Mapping[str, Any] = "imagenet",
        dataset_kwargs: Mapping[str, Any] | None = None,
        img_size: int = 224,
        in_chans: int = 3,
        scale_to_unit: float = 255.0,
        transform_kwargs: Mapping[str, Any] | None = None,
        stats_key: str = "image",
        cache_dir: str | Path | None = None,
        sample: bool = False,
        sample_kwargs: Mapping[str, Any] | None = None,
        full_check_max_samples: int = FULL_CHECK_MAX_SAMPLES,
        label_fraction: float = 1.0,
        fraction_seed: int = 0,
        subset_dir: str | Path | None = None,
        opencv_threads: int | None = 0,
        sharing_strategy: str | None = None,
    ) -> None:
        super().__init__()
        self.dataset, self.root = dataset, Path(root)
        self.splits = {k: v for k, v in dict(splits).items() if v}
        unknown = set(self.splits) - set(STAGES)
        if unknown:
            raise ConfigError(f"dataset.splits: unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        self.transform_factory = transforms
        self.batch_size, self.eval_batch_size = int(batch_size), eval_batch_size
        self.per_device_batch = None if per_device_batch is None else int(per_device_batch)
        self.num_workers = int(num_workers)
        self.normalize = normalize
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.scale_to_unit = float(scale_to_unit)
        self.transform_kwargs = {"img_size": img_size, "in_chans": in_chans, "scale_to_unit": self.scale_to_unit,
                                 **dict(transform_kwargs or {})}
        self.stats_key, self.cache_dir = stats_key, cache_dir
        self.sample, self.sample_kwargs = bool(sample), dict(sample_kwargs or {})
        self.full_check_max_samples = int(full_check_max_samples or 0)
        self.label_fraction, self.fraction_seed = float(label_fraction), int(fraction_seed or 0)
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {label_fraction!r}")
        self.subset_dir = Path(subset_dir) if subset_dir else None
        self.opencv_threads = None if opencv_threads is None else int(opencv_threads)
        strategies = torch.multiprocessing.get_all_sharing_strategies()
        if sharing_strategy is not None and sharing_strategy not in strategies:
            raise ConfigError(f"data.sharing_strategy must be one of {sorted(strategies)} or null, "
                              f"got {sharing_strategy!r}")
        self.sharing_strategy = sharing_strategy
        #: the label-fraction subset training reads (None: the whole train split); the run records it
        self.train_subset: dict[str, Any] | None = None
        self._train_loader: Any = None  # the ResumableLoader of this fit, and a position to resume it at
        self._train_state: dict[str, Any] | None = None
        self._sample_written = False
        self.raw: dict[str, Dataset] = {}
        self.datasets: dict[str, Dataset] = {}
        self.mean: list[float] | None = None
        self.std: list[float] | None = None
        self.after_transfer: Callable[[Any], Any] | None = None

    # -- data on disk -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the generated sample copy when ``sample=True`` (once; never over other files)."""
        from rsbench.data.samples import SAMPLE_NOTE, is_sample, write_sample

        if not self.sample or self._sample_written:  # Lightning calls this before fit and again before test
            return
        if not is_sample(self.root):
            if self.root.exists() and any(self.root.iterdir()):
                raise ConfigError(f"dataset.sample=true but {self.root} already holds other files; "
                                  "point dataset.root at an empty folder")
            self._write_sample_atomically(write_sample)
        log.info("NOTE: %s\n      %s written to %s", SAMPLE_NOTE, self.dataset, self.root)
        self._sample_written = True

    def _write_sample_atomically(self, write_sample: Callable) -> None:
        """Write the sample beside the root and rename it into place, so that sweep members starting together
        (hydra/launcher=local or slurm) never see half a sample or each other's files: the first rename wins."""
        import os
        import shutil

        from rsbench.data.samples import is_sample

        self.root.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root.parent / f".{self.root.name}.sample-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            write_sample(self.dataset, tmp, seed=0, **self.sample_kwargs)
            try:
                if self.root.is_dir() and not any(self.root.iterdir()):
                    self.root.rmdir()
                os.rename(tmp, self.root)
            except OSError:
                if not is_sample(self.root):  # not another member's sample: a real conflict
                    raise ConfigError(f"dataset.sample=true but {self.root} already holds other files; "
                                      "point dataset.root at an empty folder") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def check(self) -> None:
        """Build every configured split: layout, split files and (per ``verify``) every file.

        ``dataset_kwargs.verify``: ``auto`` (the default) opens every file's header (the loader's
        ``header``) and reads every sample of a split of at most ``full_check_max_samples`` samples in
        full; ``none``, ``header`` and ``full`` go to the loader as they are (``full``: every file decoded)."""
        from rsbench.data.registry import DATASETS
        from rsbench.data.samples import is_sample

        if self.raw:
            return
        kw = dict(self.dataset_kwargs)
        if self.sample or is_sample(self.root):  # what the generated copy needs (RESISC45: its own split files)
            extra = DATASETS.get(self.dataset).sample_loader_kwargs(self.root)
            kw.update({k: v for k, v in extra.items() if kw.get(k) is None})
        # verify=auto (the default): the loader opens every file's header; a split of at most
        # full_check_max_samples samples is then read in full as well (_read_every_sample)
        auto = kw.get("verify", "auto") in ("auto", None)
        decoded: set[str] = set()
        for stage, split in self.splits.items():
            self.raw[stage] = build_dataset(self.dataset, self.root, split, None, **kw)
            log.info("%s %s (%s): %d samples", self.dataset, stage, split, len(self.raw[stage]))
            if auto and split not in decoded and 0 < len(self.raw[stage]) <= self.full_check_max_samples:
                self._read_every_sample(self.raw[stage], split)
                decoded.add(split)
        self.mean, self.std = self._norm_stats()
        tfs = self.transform_factory(mean=self.mean, std=self.std, **self.transform_kwargs) \
            if self.transform_factory else {}
        self.after_transfer = tfs.get("after_transfer")
        for stage, ds in self.raw.items():
            if stage == "train" and hasattr(ds, "training_view"):
                ds = ds.training_view()  # the dataset's own train-time filter (detection: images without objects)
            if stage == "train" and self.label_fraction < 1.0:
                ds = self._label_fraction(ds)
            self.datasets[stage] = Transformed(ds, tfs.get("train" if stage == "train" else "eval"))

    def setup(self, stage: str | None = None) -> None:
        self.check()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The transforms' ``after_transfer`` step, then the lists of a batch packed for the trip from a
        worker unpacked (:mod:`rsbench.data.packing`), on the batch's device (Lightning calls this for every
        batch of every stage, after moving it; other callers of the loaders apply it themselves)."""
        return unpack_lists(self.after_transfer(batch) if self.after_transfer is not None else batch)

    def _label_fraction(self, ds: Dataset) -> Dataset:
        """The ``label_fraction`` subset of the train split as training reads it (:mod:`rsbench.data.fractions`):
        what the split file in ``subset_dir`` lists when it is there (a resumed run, or a rerun in the folder),
        else drawn with ``fraction_seed`` and saved there. Validation and test are never subset; per-band
        statistics (``normalize: dataset``) stay those of the whole train split (images, not labels)."""
        from torch.utils.data import Subset

        from rsbench.data.fractions import label_subset, read_subset_file, subset_file_name, write_subset_file

        split = str(self.splits["train"])
        names = [ds.sample_name(i) for i in range(len(ds))]
        if len(set(names)) != len(names):
            raise ConfigError(f"data.label_fraction: the {self.dataset} train split names two samples alike, so its "
                              "subset cannot be saved as a split file")
        indices, stratified = label_subset(ds, self.label_fraction, self.fraction_seed)
        path = self.subset_dir / subset_file_name(split, self.label_fraction, self.fraction_seed) \
            if self.subset_dir is not None else None
        reused = path is not None and path.is_file()
        if reused:
            indices = read_subset_file(path, names)
        elif path is not None:
            write_subset_file(path, [names[i] for i in indices], dataset=self.dataset, split=split,
                              fraction=self.label_fraction, seed=self.fraction_seed, of=len(ds), stratified=stratified)
        self.train_subset = {"fraction": self.label_fraction, "seed": self.fraction_seed, "size": len(indices),
                             "of": len(ds), "stratified": stratified, "file": str(path) if path else None,
                             "reused": reused}
        log.info("label fraction %g of %s train (%s): %d of %d samples, seed %d, %s; %s %s", self.label_fraction,
                 self.dataset, split, len(indices), len(ds), self.fraction_seed,
                 "stratified per class" if stratified else "plain", "read from" if reused else "saved as", path)
        return Subset(ds, indices)

    def _read_every_sample(self, ds: Dataset, split: str) -> None:
        """Read (decode) every sample of a small split as training will, before training: a file whose header
        reads but whose pixels do not (an image cut short) is a :class:`DataError` naming it now, not mid-run.
        With ``num_workers`` workers, as the loaders read."""
        import time

        from rsbench.errors import RsbenchError, unwrap_worker_error

        t0 = time.perf_counter()
        try:
            if self.num_workers > 0 and len(ds) > 1:
                for _ in DataLoader(ds, batch_size=16, num_workers=min(self.num_workers, len(ds)), collate_fn=_discard,
                                    worker_init_fn=self._worker_init()):
                    pass
            else:
                for i in range(len(ds)):
                    ds[i]
        except RsbenchError as e:  # a worker's error as the original one (its message names the file)
            raise unwrap_worker_error(e) from None
        log.info("%s %s: all %d samples read in full before training (%.1f s)", self.dataset, split, len(ds),
                 time.perf_counter() - t0)

    def has_split(self, stage: str) -> bool:
        return stage in self.splits

    def _norm_stats(self) -> tuple[list[float], list[float]]:
        n = self.normalize
        if isinstance(n, Mapping):
            return list(n["mean"]), list(n["std"])
        if n == "imagenet":
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        if n == "dataset":
            if "train" not in self.raw:
                raise ConfigError("normalize: dataset needs a train split to take the statistics from")
            mean, std = band_stats(self.raw["train"], key=self.stats_key, cache_dir=self.cache_dir,
                                   cache_key=f"{self.dataset}|{self.root.resolve()}|{self.splits.get('train')}|"
                                             f"{sorted(self.dataset_kwargs.items())}")
            return [m / self.scale_to_unit for m in mean], [s / self.scale_to_unit for s in std]
        raise ConfigError(f"normalize must be imagenet, dataset or {{mean, std}}, got {n!r}")

    # -- what the task and the callbacks ask of the data ----------------------------------------
    def plot(self, sample: Mapping[str, Any], stage: str = "test", index: int | None = None):
        """The dataset's own ``plot`` (TorchGeo's convention) of one sample, titled by its name."""
        ds = self.raw[stage]
        name = ds.sample_name(index) if index is not None else None
        return ds.plot(dict(sample), suptitle=name)

    def dataset_of(self, stage: str):
        """The dataset of ``stage`` itself (no transform): what a task asks of it, e.g. a submission's format."""
        return self.raw[stage]

    def sample_name(self, stage: str, index: int) -> str:
        return self.raw[stage].sample_name(index)

    def num_samples(self, stage: str) -> int:
        return len(self.raw[stage])

    @property
    def class_names(self) -> list[str]:
        ds = next(iter(self.raw.values()), None)
        return list(getattr(ds, "classes", []) or [])

    # -- loaders ------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        t = self.trainer
        return (getattr(t, "world_size", 1), getattr(t, "global_rank", 0)) if t is not None else (1, 0)

    def batch_plan(self, world: int | None = None) -> dict[str, int]:
        """How the recipe's total batch is reached on ``world`` processes: ``per_device`` x ``world`` x
        ``accumulate`` = ``total`` exactly (the official runs: 4-8 GPUs, no accumulation), or a ConfigError."""
        world = self._world()[0] if world is None else int(world)
        total, cap = self.batch_size, self.per_device_batch
        if total % world:
            raise ConfigError(f"data.batch_size={total} (the total batch) is not divisible by the {world} processes "
                              f"(devices x nodes); choose a device count that divides it")
        per = total // world
        if cap is None or cap >= per:
            return {"total": total, "world": world, "per_device": per, "accumulate": 1}
        if cap < 1:
            raise ConfigError(f"data.per_device_batch={cap}: expected a positive integer")
        accumulate = -(-per // cap)
        while per % accumulate:  # the smallest accumulation that splits the per-process batch evenly
            accumulate += 1
        return {"total": total, "world": world, "per_device": per // accumulate, "accumulate": accumulate}

    def _collate(self) -> Callable | None:
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        return getattr(module, "collate_fn", None)

    def _worker_init(self) -> Callable[[int], None] | None:
        """The loaders' ``worker_init_fn``. Also sets this process's ``sharing_strategy`` when one is
        configured: it is process-wide, and the workers started after it inherit it."""
        if self.num_workers > 0 and self.sharing_strategy is not None:
            torch.multiprocessing.set_sharing_strategy(self.sharing_strategy)
        return None if self.opencv_threads is None else partial(init_worker, opencv_threads=self.opencv_threads)

    def _loader(self, stage: str, *, train: bool) -> DataLoader:
        if stage not in self.datasets:
            raise ConfigError(f"dataset {self.dataset!r} has no split configured for {stage!r} "
                              f"(dataset.splits.{stage}=...)")
        world, rank = self._world()
        bs = self.batch_plan(world)["per_device"]
        if not train and self.eval_batch_size:
            bs = int(self.eval_batch_size)
        ds = self.datasets[stage]
        sampler = None
        if not train and world > 1:
            # Lightning's default DistributedSampler pads the split with repeated samples so every
            # rank gets as many; that would count some test images twice. Each image once instead.
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
        # Epoch-based runs keep the last partial batch, as the official DefaultSampler does
        # (EuroSAT 16,200 images at 64: 254 iterations per epoch). Iteration-based runs
        # (max_epochs=-1: mmseg's InfiniteSampler, whose batches are always full) drop it.
        iteration_based = getattr(self.trainer, "max_epochs", None) == -1
        drop_last = train and iteration_based and len(ds) > bs
        common = dict(num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=self.num_workers > 0, collate_fn=self._collate(),
                      worker_init_fn=self._worker_init())
        if train and world == 1 and self.trainer is not None and not self._distributed():
            # the same shuffled batches as shuffle=True, with a state Lightning checkpoints, so a step checkpoint
            # resumes mid-epoch at the next batch (rsbench/data/resumable.py)
            from rsbench.data.resumable import ResumableBatchSampler, ResumableLoader

            trainer = self.trainer
            loader = ResumableLoader(ds, batch_sampler=ResumableBatchSampler(len(ds), bs, drop_last,
                                                                             track_rng=self.num_workers == 0),
                                     progress=lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed,
                                     **common)
            self._train_loader = loader
            if self._train_state is not None:
                loader.load_state_dict(self._train_state)
                self._train_state = None
            return loader
        return DataLoader(ds, batch_size=bs, shuffle=train and sampler is None, sampler=sampler, drop_last=drop_last,
                          **common)

    def _distributed(self) -> bool:
        """A DDP-style strategy (even on one process): Lightning puts its DistributedSampler in the train loader."""
        from lightning.pytorch.strategies import ParallelStrategy

        return isinstance(getattr(self.trainer, "strategy", None), ParallelStrategy)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    # -- the train loader's position in every checkpoint (Lightning saves and restores a datamodule's state) --
    def state_dict(self) -> dict[str, Any]:
        """Where the train loader is in its epoch (rsbench/data/resumable.py). Kept here, not only in Lightning's
        loop state: Lightning restores that only when it builds the train loader after the checkpoint is read,
        and the schedule (``estimated_stepping_batches``) builds it before."""
        loader = self._train_loader
        return {"train_loader": loader.state_dict()} if loader is not None and hasattr(loader, "state_dict") else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._train_state = state.get("train_loader")
        if self._train_state is not None and self._train_loader is not None:
            self._train_loader.load_state_dict(self._train_state)  # before its first batch is drawn
            self._train_state = None

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", train=False)
