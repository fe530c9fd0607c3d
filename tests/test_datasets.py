"""Every registered dataset, as timm tests every model of ``list_models()``: no hand-written list.

For each class in :data:`rsbench.data.DATASETS`: its sample writer writes the official layout and
the loader reads every split of it; sample names are unique and file-name safe; ``plot`` draws a
raw sample, a normalised one and one with a prediction; a missing root names the layout; and a
``conf/dataset/*.yaml`` uses it, composing to values that read its sample.
"""

from __future__ import annotations

import io
import re

import pytest
import torch

from rsbench.config import CONF_DIR
from rsbench.constants import IGNORE_INDEX
from rsbench.data import DATASETS, build_dataset
from rsbench.data.samples import MARKER, is_sample
from rsbench.errors import DataError

NAMES = DATASETS.names()
CONFIGS = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml") if not p.stem.startswith("_"))
#: what a raw sample of each family holds (seg: a split without labels has no mask)
KEYS = {"cls": ({"image", "label"},), "seg": ({"image", "mask"}, {"image"}), "cd": ({"image1", "image2", "mask"},),
        "det": ({"image", "boxes", "labels"},), "rotdet": ({"image", "boxes", "polygons", "labels", "difficult"},)}
BOX_DIM = {"det": 4, "rotdet": 5}  # xyxy | (cx, cy, w, h, angle)
SAFE = re.compile(r'^[^<>:"/\\|?*\x00-\x1f]+$')


def _read(samples, name: str, split: str, **kw):
    cls = DATASETS.get(name)
    root = samples(name)
    return build_dataset(name, root, split, **{**cls.sample_loader_kwargs(root), **kw})


def _images(sample: dict) -> list[torch.Tensor]:
    return [sample[k] for k in ("image", "image1", "image2") if k in sample]


@pytest.fixture(scope="module")
def configs():
    """conf/dataset/<name>.yaml → its composed, resolved ``dataset`` node and the task it selects."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rsbench.config import register_resolvers

    register_resolvers()
    out = {}
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for name in CONFIGS:
            cfg = compose("config", overrides=[f"dataset={name}"])
            out[name] = (OmegaConf.to_container(cfg.dataset, resolve=True), cfg.task.name)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_contract_attributes(name):
    cls = DATASETS.get(name)
    assert cls.task in KEYS and cls.classes and all(isinstance(c, str) for c in cls.classes)
    assert cls.splits and cls.expected_layout.strip() and len(cls.rgb_bands) == 3
    if cls.task == "seg":
        assert cls.palette is None or len(cls.palette) == len(cls.classes)


@pytest.mark.parametrize("name", NAMES)
def test_sample_layout_reads_every_split(samples, name):
    cls = DATASETS.get(name)
    root = samples(name)
    assert is_sample(root) and (root / MARKER).is_file()
    for split in cls.splits:
        ds = _read(samples, name, split)
        assert type(ds) is cls and len(ds) > 0, split
        s = ds[len(ds) - 1]
        assert set(s) in [set(k) for k in KEYS[cls.task]], (split, set(s))
        for img in _images(s):
            assert img.ndim == 3 and img.dtype in (torch.uint8, torch.int32) and img.shape[0] > max(cls.rgb_bands)
        if "label" in s:
            assert s["label"].dtype == torch.long and 0 <= int(s["label"]) < len(cls.classes)
        if "boxes" in s:
            assert s["boxes"].dtype == torch.float32 and s["boxes"].ndim == 2 and s["boxes"].shape[1] == BOX_DIM[cls.task]
            assert s["labels"].dtype == torch.long and s["labels"].shape == s["boxes"].shape[:1]
            assert set(s["labels"].tolist()) <= set(range(len(cls.classes)))
        if "mask" in s:
            m = s["mask"]
            assert m.dtype == torch.long and m.shape == _images(s)[0].shape[1:]
            assert set(m.unique().tolist()) <= set(range(len(cls.classes))) | {IGNORE_INDEX}


@pytest.mark.parametrize("name", NAMES)
def test_sample_names_are_unique_and_file_safe(samples, name):
    for split in DATASETS.get(name).splits:
        ds = _read(samples, name, split)
        names = [ds.sample_name(i) for i in range(len(ds))]
        assert len(set(names)) == len(names), split
        assert all(SAFE.match(n) for n in names), names


def _normalised(sample: dict) -> dict:
    out = dict(sample)
    for k in ("image", "image1", "image2"):
        if k in out:
            x = out[k].float()
            out[k] = (x - x.mean()) / x.std().clamp(min=1e-6)
    return out


def _with_prediction(ds, sample: dict) -> dict:
    if ds.task == "cls":
        return {**sample, "prediction": (sample["label"] + 1) % len(ds.classes)}
    if ds.task in BOX_DIM:
        n = len(sample["boxes"])
        return {**sample, "prediction": {"boxes": sample["boxes"] + 2, "labels": (sample["labels"] + 1) % len(ds.classes),
                                         "scores": torch.linspace(0.1, 0.9, n)}}
    truth = sample.get("mask")
    pred = torch.zeros(_images(sample)[0].shape[1:], dtype=torch.long) if truth is None else truth.clone()
    pred[pred == IGNORE_INDEX] = 0
    pred[: pred.shape[0] // 2] = 1  # wrong in places, so every colour of the prediction map appears
    return {**sample, "prediction": pred}


@pytest.mark.parametrize("name", NAMES)
def test_plot_raw_normalised_and_with_prediction(samples, name):
    from matplotlib.figure import Figure

    cls = DATASETS.get(name)
    for split in dict.fromkeys((cls.splits[0], cls.splits[-1])):  # LoveDA: a labelled and the unlabelled split
        ds = _read(samples, name, split)
        raw = ds[0]
        panels = {"cls": 1, "seg": 1 + ("mask" in raw), "cd": 3, "det": 1, "rotdet": 1}[ds.task]
        for sample, extra in ((raw, 0), (_normalised(raw), 0), (_with_prediction(ds, raw), int(ds.task != "cls"))):
            fig = ds.plot(sample, suptitle=ds.sample_name(0))
            assert isinstance(fig, Figure)
            images = [ax for ax in fig.axes if ax.get_images()]
            assert len(images) == panels + extra and all(ax.get_title() for ax in images)
            assert fig._suptitle is not None and fig._suptitle.get_text() == ds.sample_name(0)
            if ds.task == "cls":
                title = images[0].get_title()
                assert f"label: {ds.classes[int(raw['label'])]}" in title and ("prediction: " in title) == ("prediction" in sample)
            else:
                labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
                if ds.task in BOX_DIM:  # the classes present (60 xView classes would not fit)
                    assert {ds.classes[c] for c in raw["labels"].tolist()} <= set(labels)
                else:
                    assert set(ds.classes if ds.task == "seg" else ("unchanged", "changed")) <= set(labels)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=40)
            assert buf.getvalue()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", NAMES)
def test_missing_root_names_the_layout(tmp_path, name):
    cls = DATASETS.get(name)
    first = cls.expected_layout.strip().splitlines()[0].strip()
    with pytest.raises(DataError) as e:
        build_dataset(name, tmp_path / "nope", cls.splits[0])
    assert "does not exist" in str(e.value) and first in str(e.value)


@pytest.mark.parametrize("name", NAMES)
def test_has_a_config_whose_loader_it_is(configs, name):
    using = [c for c, (d, _) in configs.items() if d["loader"] == name]
    assert using, f"no conf/dataset/*.yaml has loader: {name}"


@pytest.mark.parametrize("config", CONFIGS)
def test_config_composes_and_reads_its_sample(configs, samples, config):
    d, task = configs[config]
    cls = DATASETS.get(d["loader"])
    assert d["name"] == config and d["task"] == task == cls.task  # the task follows the dataset
    assert {s for s in d["splits"].values() if s} <= set(cls.splits)
    root = samples(d["loader"], **d["sample_kwargs"])
    kw = {**d["kwargs"], **({"tile_cache": None} if "tile_cache" in d["kwargs"] else {})}
    kw.update({k: v for k, v in cls.sample_loader_kwargs(root).items() if kw.get(k) is None})
    ds = build_dataset(d["loader"], root, d["splits"]["train"], **kw)
    assert _images(ds[0])[0].shape[0] == d["in_chans"]
    assert d["num_classes"] == len(ds.classes)  # of the instance: DOTA's version picks 15 or 18

