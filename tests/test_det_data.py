"""Detection data: DIOR and xView loaders, the training filter, bad input, transforms, plots."""

from __future__ import annotations

import json
import logging
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from rsbench.data import build_dataset
from rsbench.data.datasets.dior import CLASSES as DIOR_CLASSES
from rsbench.data.datasets.dior import voc_xml
from rsbench.data.datasets.xview import CLASSES as XVIEW_CLASSES
from rsbench.data.datasets.xview import TYPE_IDS
from rsbench.data.det_transforms import build_det_transforms
from rsbench.errors import DataError

HBB = Path("Annotations") / "Horizontal Bounding Boxes"


def _copy(samples, name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(samples(name), dst)
    return dst


def _raw_objects(xml: Path) -> list[tuple[str, list[float]]]:
    root = ET.parse(xml).getroot()
    return [(o.findtext("name"), [float(o.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")])
            for o in root.iter("object")]


# -- DIOR -------------------------------------------------------------------------------------

def test_dior_classes_are_mtps_order():
    assert len(DIOR_CLASSES) == 20 and DIOR_CLASSES[8] == "dam"
    assert DIOR_CLASSES[6:8] == ("expressway-service-area", "expressway-toll-station")
    assert DIOR_CLASSES[0] == "airplane" and DIOR_CLASSES[-1] == "windmill"


def test_dior_splits_union_and_box_parsing(samples):
    root = samples("dior")
    n = {s: len(build_dataset("dior", root, s)) for s in ("train", "val", "trainval", "test")}
    assert n == {"train": 3, "val": 2, "trainval": 5, "test": 3}
    tv = build_dataset("dior", root, "trainval")
    assert [tv.sample_name(i) for i in range(5)] == ["00001", "00002", "00003", "00004", "00005"]
    assert {r.image.parent.name for r in tv.records} == {"JPEGImages-trainval"}
    test = build_dataset("dior", root, "test")
    assert {r.image.parent.name for r in test.records} == {"JPEGImages-test"}
    for ds in (tv, test):
        for i in range(len(ds)):
            s = ds[i]
            raw = _raw_objects(ds.records[i].source)
            assert s["image"].dtype == torch.uint8 and s["image"].shape[0] == 3
            assert s["boxes"].dtype == torch.float32 and s["boxes"].shape == (len(raw), 4)
            assert s["labels"].dtype == torch.int64
            assert s["boxes"].tolist() == [b for _, b in raw]
            assert [DIOR_CLASSES[c] for c in s["labels"].tolist()] == [n.lower() for n, _ in raw]
    assert len(test[0]["boxes"]) and test.records[0].size == tuple(test[0]["image"].shape[1:])


def test_dior_lowercases_names_and_prefers_trainval_txt(samples, tmp_path):
    root = _copy(samples, "dior", tmp_path)
    xml = root / HBB / "00003.xml"
    xml.write_text(voc_xml("00003.jpg", 64, 64, []).replace(
        "</annotation>", "<object><name>Expressway-Service-area</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
        "<xmax>30.5</xmax><ymax>40</ymax></bndbox></object><object><name>DAM</name><bndbox><xmin>3</xmin>"
        "<ymin>4</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"))
    s = build_dataset("dior", root, "train")[2]
    assert s["labels"].tolist() == [6, 8]
    assert s["boxes"].tolist() == [[1, 2, 30.5, 40], [3, 4, 9, 9]]
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("00004\n00001\n")
    ds = build_dataset("dior", root, "trainval")
    assert [ds.sample_name(i) for i in range(len(ds))] == ["00004", "00001"]


def test_dior_training_view_drops_degenerate_boxes_and_empty_images(samples, caplog):
    root = samples("dior")
    ds = build_dataset("dior", root, "train")
    assert [len(r.boxes) for r in ds.records] == [2, 0, 3]
    degenerate = ds[0]["boxes"][1]
    assert float(degenerate[2] - degenerate[0]) == 0.0  # kept as annotated outside training
    with caplog.at_level(logging.INFO, logger="rsbench.data.detection"):
        view = ds.training_view()
        again = ds.training_view()
    assert again is view and view.training_view() is view
    msgs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(msgs) == 1 and msgs[0].startswith("dior train: dropped 1 boxes under 1 px, skipped 1 images without objects")
    assert len(view) == 2 and [view.sample_name(i) for i in range(2)] == ["00001", "00003"]
    assert view.filter_stats["dropped_boxes"] == 1 and view.filter_stats["skipped_empty"] == 1
    s = view[0]
    assert s["boxes"].shape == (1, 4) and s["labels"].shape == (1,)
    assert torch.equal(s["boxes"][0], ds[0]["boxes"][0])
    # the original keeps everything (val/test are never filtered)
    assert len(ds) == 3 and len(ds.records[0].boxes) == 2
    # images under min_size px (mmdet's min_size=32 filter; here 90 to hit the 64 px sample 00003)
    small = ds.training_view(min_size=90)
    assert [small.sample_name(i) for i in range(len(small))] == ["00001"] and small.filter_stats["skipped_small"] == 1


def test_dior_image_whose_boxes_all_drop_is_kept_as_mmdet_does(samples, tmp_path):
    root = _copy(samples, "dior", tmp_path)
    (root / HBB / "00003.xml").write_text(voc_xml("00003.jpg", 64, 64, [(18, (5, 5, 5.5, 20)), (13, (70, 2, 90, 9))]))
    ds = build_dataset("dior", root, "train")
    view = ds.training_view()
    # box 1 is 0.5 px wide; box 2 lies right of the 64 px image (no overlap): both dropped
    assert view.filter_stats["dropped_boxes"] == 3 and view.filter_stats["dropped_outside"] == 1
    assert view.filter_stats["emptied"] == 1
    assert [view.sample_name(i) for i in range(len(view))] == ["00001", "00003"] and len(view[1]["boxes"]) == 0
    strict = ds.training_view(drop_emptied=True)
    assert [strict.sample_name(i) for i in range(len(strict))] == ["00001"]


def test_dior_layout_variants(samples, tmp_path):
    src = samples("dior")
    nested = tmp_path / "data" / "DIOR"
    shutil.copytree(src, nested)
    assert len(build_dataset("dior", tmp_path / "data", "trainval")) == 5
    # a plain Annotations/*.xml
    hbb = nested / HBB
    for f in hbb.iterdir():
        f.rename(nested / "Annotations" / f.name)
    hbb.rmdir()
    assert len(build_dataset("dior", nested, "test")) == 3
    assert build_dataset("dior", nested, "test").ann_dir == nested / "Annotations"


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("<name>", "<name>Helicopter_", 1), r"00001.xml: object 1 has the unknown class name 'Helicopter_"),
    (lambda t: t.replace("<xmin>", "<xmin>1a", 1), r"00001.xml: object 1 \(.*\): <xmin> is '1a.*', not a number"),
    (lambda t: t.replace("<bndbox>", "<robndbox>", 1).replace("</bndbox>", "</robndbox>", 1),
     r"00001.xml: object 1 \(.*\) has no <bndbox> \(an oriented-box <robndbox>: this is a DIOR-R file\)"),
    (lambda t: t[: len(t) // 2], r"00001.xml: not a readable XML annotation"),
    (lambda t: re.sub(r"<xmax>[^<]*</xmax>", "<xmax>nan</xmax>", t, count=1), r"00001.xml: box 1 has non-finite"),
])
def test_dior_bad_annotation_names_the_file(samples, tmp_path, edit, match):
    root = _copy(samples, "dior", tmp_path)
    xml = root / HBB / "00001.xml"
    xml.write_text(edit(xml.read_text()))
    with pytest.raises(DataError, match=match):
        build_dataset("dior", root, "train")
    assert len(build_dataset("dior", root, "test")) == 3  # other splits unaffected


def test_dior_missing_files(samples, tmp_path):
    root = _copy(samples, "dior", tmp_path)
    (root / "JPEGImages-trainval" / "00004.jpg").unlink()
    with pytest.raises(DataError, match=r"00004.jpg: image not found for the annotation .*00004.xml"):
        build_dataset("dior", root, "val")
    (root / HBB / "00002.xml").unlink()
    with pytest.raises(DataError, match=r"00002.xml: annotation XML not found for image '00002' of .*train.txt"):
        build_dataset("dior", root, "train")
    (root / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(DataError, match=r"test.txt: split file not found"):
        build_dataset("dior", root, "test")
    (root / "JPEGImages-test" / "00006.jpg").write_bytes(b"\xff\xd8garbage")
    (root / "ImageSets" / "Main" / "test.txt").write_text("00006\n")
    with pytest.raises(DataError, match=r"00006.jpg: not a readable image"):
        build_dataset("dior", root, "test")
    with pytest.raises(DataError, match="split 'all'"):
        build_dataset("dior", root, "all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no ImageSets/ or Annotations/"):
        build_dataset("dior", tmp_path / "empty", "train")


# -- xView loader -----------------------------------------------------------------------------

def test_xview_classes_and_type_ids():
    assert len(XVIEW_CLASSES) == len(TYPE_IDS) == 60 and len(set(TYPE_IDS)) == 60
    assert (TYPE_IDS[0], XVIEW_CLASSES[0]) == (11, "Fixed-wing Aircraft")
    assert (TYPE_IDS[48], XVIEW_CLASSES[48]) == (73, "Building")
    assert (TYPE_IDS[59], XVIEW_CLASSES[59]) == (94, "Tower")
    assert 75 not in TYPE_IDS and 82 not in TYPE_IDS


def test_xview_reads_the_prepared_tiles(samples):
    root = samples("xview")
    train, val, test = (build_dataset("xview", root, s) for s in ("train", "val", "test"))
    split = json.loads((root / "rsbench_xview_split.json").read_text())
    assert {r.image.stem.rsplit("_", 1)[0] + ".tif" for r in train.records} == set(split["train"])
    assert {r.image.stem.rsplit("_", 1)[0] + ".tif" for r in val.records} == set(split["val"])
    assert [test.sample_name(i) for i in range(len(test))] == [val.sample_name(i) for i in range(len(val))]
    doc = json.loads((root / "xview_val_coco_format.json").read_text())
    for i in range(len(val)):
        s = val[i]
        assert s["image"].shape == (3, 416, 416) and s["image"].dtype == torch.uint8
        img = doc["images"][i]
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        assert val.sample_name(i) == Path(img["file_name"]).stem
        assert s["boxes"].tolist() == [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                        a["bbox"][1] + a["bbox"][3]] for a in anns]
        assert s["labels"].tolist() == [a["category_id"] for a in anns]
        assert len(anns) > 0  # empty tiles are not written


def test_xview_bad_input(samples, tmp_path):
    root = _copy(samples, "xview", tmp_path)
    ann = root / "xview_train_coco_format.json"
    good = json.loads(ann.read_text())

    def write(doc):
        ann.write_text(json.dumps(doc))

    doc = json.loads(json.dumps(good))
    doc["annotations"][0]["category_id"] = 60
    write(doc)
    with pytest.raises(DataError, match=r"xview_train_coco_format.json: annotation 1 has category_id 60"):
        build_dataset("xview", root, "train")
    doc = json.loads(json.dumps(good))
    doc["annotations"][1]["bbox"] = [1, 2, 3]
    write(doc)
    with pytest.raises(DataError, match=r"annotation 2 has an unparsable bbox \[1, 2, 3\]"):
        build_dataset("xview", root, "train")
    doc = json.loads(json.dumps(good))
    doc["annotations"][0]["image_id"] = 999
    write(doc)
    with pytest.raises(DataError, match=r"annotation 1 refers to the unknown image id 999"):
        build_dataset("xview", root, "train")
    doc = json.loads(json.dumps(good))
    doc["images"][0]["width"] = 400
    write(doc)
    with pytest.raises(DataError, match=r"is 416x416 px \(WxH\) but .* says 400x416"):
        build_dataset("xview", root, "train")
    write(good)
    first = root / "train" / "images" / good["images"][0]["file_name"]
    first.unlink()
    with pytest.raises(DataError, match=rf"{first.name}: image not found for the annotation file"):
        build_dataset("xview", root, "train")
    ann.write_text("{")
    with pytest.raises(DataError, match="xview_train_coco_format.json: not a readable COCO annotation JSON"):
        build_dataset("xview", root, "train")
    with pytest.raises(DataError, match="tile it first with scripts/prepare_xview.py"):
        build_dataset("xview", root / "xView", "train")


# -- transforms -------------------------------------------------------------------------------

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _tfs(img_size: int, flip_prob: float = 0.5, **kw):
    """The pipeline as a run applies it: the transform, then (a batch of one) the ``after_transfer`` step
    that normalises the deferred uint8 image."""
    tfs = build_det_transforms(mean=MEAN, std=STD, img_size=img_size, in_chans=3, scale_to_unit=255.0,
                               flip_prob=flip_prob, **kw)

    def run(t):
        def call(sample):
            out = t(sample)
            return {**out, "image": tfs["after_transfer"]({"image": [out["image"]]})["image"][0]}
        return call

    return {"train": run(tfs["train"]), "eval": run(tfs["eval"]), "raw": tfs}


def test_normalisation_deferred_to_the_device_gives_the_same_values():
    """By default the image leaves the worker as uint8 (a quarter of the bytes) and is normalised after the
    transfer; bit for bit what normalising in the worker gives, and the datamodule applies it."""
    s = _sample(30, 40, [[2, 3, 5, 8]])
    torch.manual_seed(0)
    deferred = _tfs(40, flip_prob=0.5)["raw"]["train"](s)
    assert deferred["image"].dtype == torch.uint8
    torch.manual_seed(0)
    direct = _tfs(40, flip_prob=0.5, defer_normalize=False)["raw"]["train"](s)
    assert direct["image"].dtype == torch.float32
    torch.manual_seed(0)
    assert torch.equal(_tfs(40, flip_prob=0.5)["train"](s)["image"], direct["image"])
    from rsbench.data.datamodule import RSDataModule

    dm = RSDataModule(dataset="dior", root="unused", splits={}, batch_size=1)
    assert dm.on_after_batch_transfer({"image": [deferred["image"]]}, 0)["image"][0].dtype == torch.uint8  # no step
    dm.after_transfer = _tfs(40)["raw"]["after_transfer"]
    assert torch.equal(dm.on_after_batch_transfer({"image": [deferred["image"]]}, 0)["image"][0], direct["image"])


def _sample(h: int, w: int, boxes) -> dict:
    img = torch.arange(3 * h * w, dtype=torch.int64).reshape(3, h, w).remainder(256).to(torch.uint8)
    return {"image": img, "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.arange(len(boxes), dtype=torch.int64)}


def _normalised(img: torch.Tensor) -> torch.Tensor:
    return (img.float() / 255.0 - 0.5) / 0.25


def test_flip_of_boxes_by_hand():
    s = _sample(10, 20, [[2, 3, 5, 8], [0, 0, 20, 10]])
    out = _tfs(20, flip_prob=1.0)["train"](s)
    assert out["boxes"].tolist() == [[15, 3, 18, 8], [0, 0, 20, 10]]  # x' = W - x2, W - x1 with W = 20
    assert torch.allclose(out["image"], _normalised(s["image"]).flip(-1))
    assert out["labels"].tolist() == [0, 1] and out["image"].dtype == torch.float32
    kept = _tfs(20, flip_prob=0.0)["train"](s)
    assert kept["boxes"].tolist() == s["boxes"].tolist() and torch.allclose(kept["image"], _normalised(s["image"]))
    torch.manual_seed(0)
    flips = [_tfs(20)["train"](s)["boxes"][0, 0].item() == 15 for _ in range(200)]
    assert 60 < sum(flips) < 140


def test_keep_ratio_resize_of_a_non_square_image():
    # 50 x 100 (H x W) into 200²: factor min(200/100, 200/50) = 2 → 100 x 200
    s = _sample(50, 100, [[10, 5, 30, 25], [90, 40, 105, 55]])
    tr, ev = _tfs(200, flip_prob=0.0)["train"](s), _tfs(200)["eval"](s)
    assert tr["image"].shape == ev["image"].shape == (3, 100, 200)
    assert tr["boxes"].tolist() == [[20, 10, 60, 50], [180, 80, 200, 100]]  # clipped in training
    assert ev["boxes"].tolist() == [[20, 10, 60, 50], [180, 80, 210, 110]]  # as annotated at eval
    # 333 x 500 into 800²: factor 1.6 → 533 x 800 (int(x * f + 0.5)); boxes by the actual 800/500, 533/333
    s = _sample(333, 500, [[100, 100, 200, 333]])
    out = _tfs(800)["eval"](s)
    assert out["image"].shape == (3, 533, 800)
    assert np.allclose(out["boxes"].numpy(), [[160, 100 * 533 / 333, 320, 533]], atol=1e-4)
    # 300 x 100 into 150²: shrink by 0.5 → 150 x 50
    assert _tfs(150)["eval"](_sample(300, 100, [[0, 0, 10, 10]]))["image"].shape == (3, 150, 50)


def test_resize_is_the_identity_at_the_recipe_size():
    s = _sample(40, 40, [[1, 2, 3, 4], [30, 30, 45, 41]])
    for key in ("train", "eval"):
        out = _tfs(40, flip_prob=0.0)[key](s)
        assert torch.equal(out["image"], _normalised(s["image"]))
    assert _tfs(40, flip_prob=0.0)["train"](s)["boxes"].tolist() == [[1, 2, 3, 4], [30, 30, 40, 40]]
    assert _tfs(40)["eval"](s)["boxes"].tolist() == s["boxes"].tolist()
    empty = {"image": s["image"], "boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.long)}
    out = _tfs(40, flip_prob=1.0)["train"](empty)
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)


def test_transforms_on_the_dior_sample(samples):
    ds = build_dataset("dior", samples("dior"), "test", transforms=_tfs(128)["eval"])
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].dtype == torch.float32 and max(s["image"].shape[1:]) == 128


# -- plots ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, split", [("dior", "train"), ("xview", "val")])
def test_plot_gt_and_prediction(samples, name, split):
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    ds = build_dataset(name, samples(name), split)
    s = ds[0]
    n = len(s["boxes"])
    fig = ds.plot(s, suptitle=ds.sample_name(0))
    assert isinstance(fig, Figure) and fig._suptitle.get_text() == ds.sample_name(0)
    axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(axes) == 1 and sum(isinstance(p, Rectangle) for p in axes[0].patches) == n
    labels = {t.get_text() for lg in fig.legends for t in lg.get_texts()}
    assert labels == {ds.classes[c] for c in s["labels"].tolist()}
    scores = torch.linspace(0.05, 0.95, n)
    pred = {"boxes": s["boxes"] + 1, "scores": scores, "labels": s["labels"]}
    norm = {**s, "image": _normalised(s["image"]), "prediction": pred}
    fig = ds.plot(norm)
    axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(axes) == 2 and all(ax.get_title() for ax in axes)
    assert sum(isinstance(p, Rectangle) for p in axes[1].patches) == int((scores >= 0.3).sum())
    fig.savefig(__import__("io").BytesIO(), format="png", dpi=30)
    assert isinstance(ds.plot({"image": s["image"]}), Figure)
