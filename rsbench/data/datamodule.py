"""One LightningDataModule for every dataset: raw datasets from :func:`build_dataset`, the task's
transforms on top, and a batch size given in total over all devices (the paper's convention)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from rsbench.data.registry import build_dataset
from rsbench.data.stats import band_stats
from rsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rsbench.errors import ConfigError

log = logging.getLogger(__name__)


class Transformed(Dataset):
    """A view of ``base`` with ``transform`` applied to each sample dict."""

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.base[i]
        return self.transform(s) if self.transform is not None else s

    def __getattr__(self, name: str) -> Any:  # classes, samples, ... of the raw dataset
        if name in ("base", "transform"):
            raise AttributeError(name)
        return getattr(self.base, name)


class RSDataModule(L.LightningDataModule):
    def __init__(
        self,
        *,
        name: str,
        root: str | Path,
        splits: Mapping[str, str],
        transforms: Callable[..., dict[str, Callable]] | None,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        normalize: str | Mapping[str, Any] = "imagenet",
        dataset_kwargs: Mapping[str, Any] | None = None,
        transform_kwargs: Mapping[str, Any] | None = None,
        collate_fn: Callable | None = None,
        cache_dir: str | Path | None = None,
        image_key: str = "image",
    ) -> None:
        super().__init__()
        self.name, self.root, self.splits = name, Path(root), dict(splits)
        self.transform_factory = transforms
        self.batch_size, self.eval_batch_size = int(batch_size), eval_batch_size
        self.num_workers = int(num_workers)
        self.normalize = normalize
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.transform_kwargs = dict(transform_kwargs or {})
        self.collate_fn = collate_fn
        self.cache_dir = cache_dir
        self.image_key = image_key
        self.raw: dict[str, Dataset] = {}
        self.datasets: dict[str, Dataset] = {}
        self.mean: list[float] | None = None
        self.std: list[float] | None = None

    # Building the raw datasets checks the layout and every split up front, before any model
    # is built; the app calls this explicitly so bad data fails fast.
    def prepare(self) -> None:
        if self.raw:
            return
        for stage in ("train", "val", "test"):
            split = self.splits.get(stage)
            if split is None:
                continue
            self.raw[stage] = build_dataset(self.name, self.root, split, None, **self.dataset_kwargs)
            log.info("%s %s (%s): %d samples", self.name, stage, split, len(self.raw[stage]))
        self.mean, self.std = self._norm_stats()
        tfs = self.transform_factory(mean=self.mean, std=self.std, **self.transform_kwargs) if self.transform_factory else {}
        for stage, ds in self.raw.items():
            self.datasets[stage] = Transformed(ds, tfs.get("train" if stage == "train" else "eval"))

    def _norm_stats(self) -> tuple[list[float], list[float]]:
        n = self.normalize
        if isinstance(n, Mapping):
            return list(n["mean"]), list(n["std"])
        if n == "imagenet":
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        if n == "dataset":
            scale = float(self.transform_kwargs.get("scale_to_unit", 1.0))
            mean, std = band_stats(self.raw["train"], key=self.image_key, cache_dir=self.cache_dir,
                                   cache_key=f"{self.name}|{self.root.resolve()}|{self.splits.get('train')}")
            return [m / scale for m in mean], [s / scale for s in std]
        raise ConfigError(f"data.normalize must be imagenet, dataset or {{mean, std}}, got {n!r}")

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _per_device(self, total: int) -> int:
        world = getattr(self.trainer, "world_size", 1) if self.trainer is not None else 1
        if total % world:
            raise ConfigError(f"data.batch_size={total} is not divisible by the {world} devices")
        return max(1, total // world)

    def _loader(self, stage: str, *, train: bool) -> DataLoader:
        if stage not in self.datasets:
            raise ConfigError(f"dataset {self.name!r} has no split configured for {stage!r}")
        bs = self._per_device(self.batch_size)
        if not train and self.eval_batch_size:
            bs = int(self.eval_batch_size)
        sampler = None
        world = getattr(self.trainer, "world_size", 1) if self.trainer is not None else 1
        if not train and world > 1:
            # Lightning's default DistributedSampler pads the split with repeated samples so every
            # rank gets as many; that would count some test images twice. Each image once instead.
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(self.datasets[stage], num_replicas=world,
                                                   rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(
            self.datasets[stage], batch_size=bs, shuffle=train and sampler is None, sampler=sampler,
            drop_last=train and len(self.datasets[stage]) > bs,
            num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0, collate_fn=self.collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
