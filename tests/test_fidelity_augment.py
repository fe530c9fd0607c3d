"""Augmentation against independent references: small NumPy reimplementations written from the
official sources (mmseg 1.x / Open-CD 1.1 ``PhotoMetricDistortion``, mmseg ``RandomCrop.crop_bbox``,
MMPretrain 1.2 ``RandomErasing``, ``ResizeEdge`` + ``CenterCrop``), the pixel-scale statistics
of the official configs, and NumPy statistics. Each test here failed on a one-line slip that the
rest of the suite let through (noted per test)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rsbench.constants import IMAGENET_MEAN, IMAGENET_STD
from rsbench.data.augment import PhotoMetric, cat_max_ratio_crop_box
from rsbench.data.cd_transforms import CDTransform, build_cd_transforms

# the configs' data_preprocessor (pixel scale, RGB): configs/mtp/*/*.py in ViTAE-Transformer/MTP
OFFICIAL_MEAN = (123.675, 116.28, 103.53)
OFFICIAL_STD = (58.395, 57.12, 57.375)
OPENCD = {"brightness_delta": 10, "contrast_range": (0.8, 1.2), "saturation_range": (0.8, 1.2), "hue_delta": 10}
MMSEG = {"brightness_delta": 32, "contrast_range": (0.5, 1.5), "saturation_range": (0.5, 1.5), "hue_delta": 18}


class Script:
    """A random source replaying fixed unit values, with both numpy APIs: the legacy
    ``np.random`` one the official code calls (``randint``, ``uniform``, ``rand``) and the
    ``Generator`` one rsbench calls (``integers``, ``uniform``, ``random``)."""

    def __init__(self, values):
        self.values, self.i = list(values), 0

    def _u(self) -> float:
        u = float(self.values[self.i])  # np.random returns Python floats: float32 arithmetic stays float32
        self.i += 1
        return u

    def randint(self, low, high=None):
        low, high = (0, low) if high is None else (low, high)
        return low + int(self._u() * (high - low))

    integers = randint

    def uniform(self, a, b):
        return a + self._u() * (b - a)

    def random(self):
        return self._u()

    rand = random


# -- PhotoMetricDistortion: mmseg / Open-CD, op by op, on BGR as they run -------------------------

def _mmseg_photometric(bgr: np.ndarray, r: Script, p: dict) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion.transform`` (= one date of Open-CD's
    ``MultiImgPhotoMetricDistortion`` with ``consistent_contrast_mode=False``) on a BGR uint8
    image; ``mmcv.bgr2hsv``/``hsv2bgr`` are ``cv2.cvtColor(..., COLOR_BGR2HSV / HSV2BGR)``."""
    import cv2

    def convert(x, alpha=1, beta=0):
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def contrast(x):
        return convert(x, alpha=r.uniform(*p["contrast_range"])) if r.randint(2) else x

    img = bgr
    if r.randint(2):
        img = convert(img, beta=r.uniform(-p["brightness_delta"], p["brightness_delta"]))
    mode = r.randint(2)
    if mode == 1:
        img = contrast(img)
    if r.randint(2):  # saturation: its own HSV round trip
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=r.uniform(*p["saturation_range"]))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if r.randint(2):  # hue: another one
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + r.randint(-p["hue_delta"], p["hue_delta"])) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if mode == 0:
        img = contrast(img)
    return img


def _test_images():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ramp = np.stack([*np.meshgrid(np.linspace(0, 255, 16), np.linspace(255, 0, 16)), np.full((16, 16), 250.0)],
                    -1).astype(np.uint8)  # saturated colours and both ends of the range (clipping)
    return noise, ramp


@pytest.mark.parametrize("params", [MMSEG, OPENCD], ids=["seg-mmseg", "cd-opencd"])
def test_photometric_distortion_equals_the_official_op_order_exactly(params):
    """Exact uint8 equality (no rounding slack: the reference calls the same OpenCV conversions, on
    BGR as mmcv does, so RGB↔BGR handling is checked too) over 300 fixed parameter draws.
    Slips caught: one HSV round trip for saturation and hue; contrast mode sense swapped."""
    op = PhotoMetric(**params)
    draws = np.random.default_rng(1).random((300, 10))  # at most 9 draws per call
    draws[:100, [0, 2, 3, 5, 7]] = 0.9  # every step on (coins 1) in a third of the cases
    for img in _test_images():
        for u in draws:
            expected = _mmseg_photometric(np.ascontiguousarray(img[..., ::-1]), Script(u), params)[..., ::-1]
            assert np.array_equal(op(img, Script(u)), expected)


def test_cd_photometric_draws_per_date_in_order():
    """Open-CD: date 1's draws then date 2's, each its own mode (``consistent_contrast_mode`` off)."""
    cd = CDTransform(train=True, img_size=16, photometric=OPENCD)
    a, b = _test_images()
    u = np.random.default_rng(2).random(40)
    s_ref, s = Script(u), Script(u)
    ref = [_mmseg_photometric(np.ascontiguousarray(x[..., ::-1]), s_ref, OPENCD)[..., ::-1] for x in (a, b)]
    assert np.array_equal(cd.photometric(a, s), ref[0]) and np.array_equal(cd.photometric(b, s), ref[1])
    assert s.i == s_ref.i


def test_cd_date2_distortion_is_made_from_date2(monkeypatch):
    """Slip caught: ``a, b = self.photometric(a, rng), self.photometric(a, rng)`` (date 2 replaced)."""
    s = {"image1": torch.full((3, 16, 16), 10, dtype=torch.uint8), "image2": torch.full((3, 16, 16), 200, dtype=torch.uint8),
         "mask": torch.zeros(16, 16, dtype=torch.long)}
    common = {"train": True, "img_size": 16, "rotate_prob": 0, "flip_prob": 0, "cat_max_ratio": 1.0, "exchange_prob": 0}
    tf = CDTransform(photometric=None, **common)
    tf.photometric = lambda img, rng: 255 - img  # a stand-in that shows which image it was given
    o = tf(s)
    norm = tf.normalize
    assert torch.allclose(o["image1"], norm(np.full((16, 16, 3), 245, np.uint8)))
    assert torch.allclose(o["image2"], norm(np.full((16, 16, 3), 55, np.uint8)))
    real = CDTransform(photometric=OPENCD, **common)
    torch.manual_seed(0)
    for _ in range(20):  # ±10 brightness, ×0.8–1.2: date 2 stays far from date 1
        o2 = real(s)["image2"]
        raw2 = (o2 * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]) * 255
        assert raw2.mean() > 130


# -- CD geometry: rotation border, OSCD label resolution, the test-time chain ---------------------

def test_cd_rotation_border_is_ignore_in_the_mask_and_zero_in_the_dates():
    """mmcv ``imrotate``: dates border 0, mask border 255 (Open-CD ``seg_pad_val``), nearest.
    Slip caught: the mask's rotation border filled 0 (= unchanged, counted in the loss)."""
    tf = CDTransform(train=True, img_size=48)
    m = np.zeros((48, 48), np.uint8)
    m[10:30, 15:40] = 1
    img = np.full((48, 48, 3), 180, np.uint8)
    a, b, rm = tf.rot_flip(img, img.copy(), m, Script([0.0, 0.95, 0.99]))  # rotate, angle +18°
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert rm[y, x] == 255 and (a[y, x] == 0).all() and (b[y, x] == 0).all()
    assert set(np.unique(rm)) == {0, 1, 255}
    assert (rm[a[..., 0] == 180] != 255).all()  # where the date is all inside, the label is too


def test_oscd_training_label_keeps_its_resolution_and_rotates_with_the_dates():
    """Open-CD OSCD: ``MultiImgResize(224)`` then ``MultiImgLoadAnnotations``: dates 224², label 96²."""
    m = torch.zeros(96, 96, dtype=torch.long)
    m[20:50, 30:70] = 1
    img = (m * 200 + 20).to(torch.uint8).expand(3, 96, 96).contiguous()
    s = {"image1": img, "image2": img.clone(), "mask": m}
    plain = CDTransform(train=True, img_size=224, resize=224, rotate_prob=0, flip_prob=0, exchange_prob=0)
    o = plain(s)
    assert o["image1"].shape == (3, 224, 224) and torch.equal(o["mask"], m)
    tf = CDTransform(train=True, img_size=224, resize=224, rotate_prob=1.0)
    torch.manual_seed(0)
    for _ in range(5):
        o = tf(s)
        assert o["mask"].shape == (96, 96) and o["image1"].shape == (3, 224, 224)
        small = F.interpolate(o["image1"][None, :1], size=(96, 96), mode="nearest")[0, 0]
        lab = o["mask"] != 255
        agree = ((small > 0)[lab] == (o["mask"][lab] == 1)).float().mean()
        assert agree > 0.95 and (o["mask"] == 255).any()  # the same rotation about each array's centre
    ev = build_cd_transforms(img_size=224, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_to_unit=255.0,
                             resize=224)["eval"](s)
    assert ev["image1"].shape == (3, 224, 224) and torch.equal(ev["mask"], m)


def test_cd_test_logits_go_to_the_input_size_then_to_the_label_size():
    """Open-CD: ``predict_by_feat`` resizes to ``img_shape`` (224), ``postprocess_result`` to
    ``ori_shape`` (96); the loss resizes straight to the label (``loss_by_feat``)."""
    from rsbench.tasks.change_detection import ChangeDetectionTask, cd_loss

    task = ChangeDetectionTask(backbone={"name": "resnet18", "pretrained": None, "kwargs": {}, "features": "maps"},
                               optim={"lr": 1e-4, "weight_decay": 0.05, "layer_decay": None}, sched={}, img_size=64,
                               num_classes=2, decoder_channels=(8, 8, 8, 8)).eval()
    head = torch.randn(1, 2, 128, 128)  # the ViT head's 2× output for 64² dates

    class Fixed(torch.nn.Module):
        def forward(self, feats):
            return head

    task.head = Fixed()
    x = torch.zeros(1, 3, 64, 64)
    two = F.interpolate(F.interpolate(head, size=(64, 64), mode="bilinear"), size=(27, 27), mode="bilinear")
    one = F.interpolate(head, size=(27, 27), mode="bilinear")
    assert not torch.equal(two.argmax(1), one.argmax(1))  # the chain matters here
    pred = task.test_step({"image1": x, "image2": x, "mask": torch.zeros(1, 27, 27, dtype=torch.long)}, 0)
    assert torch.equal(pred["prediction"], two.argmax(1))
    assert torch.allclose(task.predict_logits(x, x, (27, 27)), two)
    mask = torch.randint(0, 2, (1, 27, 27))
    assert torch.allclose(task.training_step({"image1": x, "image2": x, "mask": mask}, 0), cd_loss(one, mask))


# -- crop: the window of a known generator state -------------------------------------------------

def _mmseg_crop_bbox(mask, crop, r, cat_max_ratio, extent=None, ignore=255):
    """mmseg ``RandomCrop.crop_bbox`` (and Open-CD's ``MultiImgRandomCrop``), from the source."""
    h, w = extent or mask.shape

    def gen():
        oh = r.randint(0, max(h - crop, 0) + 1)
        ow = r.randint(0, max(w - crop, 0) + 1)
        return oh, oh + crop, ow, ow + crop

    box = gen()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            labels, cnt = np.unique(mask[box[0]:box[1], box[2]:box[3]], return_counts=True)
            cnt = cnt[labels != ignore]
            if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < cat_max_ratio:
                break
            box = gen()
    return box


def test_crop_chooses_the_official_window_for_a_known_generator_state():
    """Slips caught: offsets drawn from the wrong extent, a retry rule that keeps the first window,
    the high end inclusive (a window past the border)."""
    mask = np.zeros((256, 256), np.uint8)
    mask[:64, :64] = 1
    mask[200:, :] = 255
    for seed in range(40):
        u = np.random.default_rng(seed).random(30)
        assert cat_max_ratio_crop_box(mask, 64, Script(u), 0.75) == _mmseg_crop_bbox(mask, 64, Script(u), 0.75)
    # scripted: window 1 all class 0 (rejected), window 2 mixed (kept): 4 draws, the second window
    r = Script([0.9, 0.9, 20.5 / 193, 30.5 / 193, 0.5, 0.5])
    assert cat_max_ratio_crop_box(mask, 64, r, 0.75) == (20, 84, 30, 94) and r.i == 4
    # OSCD: the 224² dates' window slices the whole 96² label
    small = np.zeros((96, 96), np.uint8)
    assert cat_max_ratio_crop_box(small, 224, Script([0.5] * 22), 0.75, extent=(224, 224)) == (0, 224, 0, 224)
    for seed in range(10):  # offsets come from the dates' extent, not the label's
        u = np.random.default_rng(seed).random(30)
        box = cat_max_ratio_crop_box(small, 128, Script(u), 0.75, extent=(224, 224))
        assert box == _mmseg_crop_bbox(small, 128, Script(u), 0.75, extent=(224, 224))
    a = np.zeros((224, 224, 3), np.uint8)
    assert CDTransform(train=True, img_size=224).crop(a, a, small, np.random.default_rng(0))[2].shape == (96, 96)


# -- segmentation: normalisation statistics, nearest mask resize ---------------------------------

def _known_pixel_image(h=20, w=24):
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    img[:, 3, 5] = torch.tensor([200, 100, 50], dtype=torch.uint8)
    return img


def _official_norm(rgb):
    return [(v - m) / s for v, m, s in zip(rgb, OFFICIAL_MEAN, OFFICIAL_STD)]


def _eval_on_device(tfs, sample):
    """A sample through the factory's eval transform, collated as one batch and given the datamodule's
    ``after_transfer`` step (the default defers the normalisation to it), unbatched again."""
    from torch.utils.data import default_collate

    batch = default_collate([tfs["eval"](sample)])
    batch = tfs["after_transfer"](batch) if tfs.get("after_transfer") else batch
    return {k: v[0] for k, v in batch.items()}


def test_seg_and_cd_eval_normalise_with_the_official_imagenet_statistics():
    """Slip caught: mean and std swapped in the evaluation normalisation (the older tests used
    mean = std = 0.5, where a swap is invisible)."""
    from rsbench.data.datamodule import RSDataModule
    from rsbench.data.seg_transforms import build_seg_transforms

    assert np.allclose(np.asarray(IMAGENET_MEAN) * 255, OFFICIAL_MEAN) and np.allclose(np.asarray(IMAGENET_STD) * 255, OFFICIAL_STD)
    dm = RSDataModule(dataset="loveda", root="/nonexistent", splits={"test": "test"}, batch_size=1)
    mean, std = dm._norm_stats()
    assert np.allclose(mean, IMAGENET_MEAN) and np.allclose(std, IMAGENET_STD)
    img = _known_pixel_image()
    seg = _eval_on_device(build_seg_transforms(img_size=16, mean=mean, std=std), {"image": img})["image"]
    cd = _eval_on_device(build_cd_transforms(img_size=16, in_chans=3, mean=mean, std=std, scale_to_unit=255.0),
                         {"image1": img, "image2": img, "mask": torch.zeros(20, 24, dtype=torch.long)})["image1"]
    for out in (seg, cd):
        assert np.allclose(out[:, 3, 5].numpy(), _official_norm((200, 100, 50)), atol=1e-5)
        assert np.allclose(out[:, 0, 0].numpy(), _official_norm((0, 0, 0)), atol=1e-5)


def _cv2_nearest(mask, oh, ow):
    """OpenCV ``INTER_NEAREST`` (mmcv ``imresize(..., 'nearest')``): source index floor(i · in/out)."""
    h, w = mask.shape
    ys = np.minimum(np.floor(np.arange(oh) * (h / oh)).astype(int), h - 1)
    xs = np.minimum(np.floor(np.arange(ow) * (w / ow)).astype(int), w - 1)
    return mask[ys[:, None], xs[None, :]]


def test_seg_mask_is_resized_nearest_and_gains_no_label_values():
    """Slip caught: the mask resized bilinearly (silent on binary masks; here 4 classes + ignore)."""
    from rsbench.data.seg_transforms import RandomResize, build_seg_transforms

    rng = np.random.default_rng(0)
    mask = np.kron(rng.choice([0, 3, 7, 12], (5, 6)), np.ones((7, 7), np.int64)).astype(np.uint8)
    mask[:3] = 255
    for size in ((17, 20), (70, 84), (36, 43)):
        assert np.array_equal(RandomResize(32).apply_to_mask(mask, size=size), _cv2_nearest(mask, *size))
    tf = build_seg_transforms(img_size=24, photometric=False)["train"]
    img = torch.from_numpy(np.repeat(mask[None], 3, 0))
    torch.manual_seed(0)
    for _ in range(30):
        out = tf({"image": img, "mask": torch.from_numpy(mask.astype(np.int64))})["mask"]
        assert set(out.unique().tolist()) <= {0, 3, 7, 12, 255}


# -- classification: channels, eval geometry, MMPretrain's RandomErasing --------------------------

def _cls(train=False, **kw):
    """The transform with the normalisation in it (the factory defers it to after the transfer)."""
    from rsbench.data.transforms import build_cls_transforms

    tfs = build_cls_transforms(img_size=kw.pop("img_size", 56), in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                               scale_to_unit=255.0, defer_normalize=kw.pop("defer_normalize", False), **kw)
    return tfs["train" if train else "eval"]


def test_cls_normalisation_after_the_transfer_gives_the_same_values():
    """The factory's default: uint8 images from the workers, normalised by the datamodule's
    ``on_after_batch_transfer``: bit for bit what the transform normalising itself gives (the same draws:
    RandomResizedCrop, flip, RandAugment, erasing), train and eval; multispectral images stay float."""
    from rsbench.data.transforms import build_cls_transforms

    kw = dict(img_size=56, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_to_unit=255.0)
    deferred, direct = build_cls_transforms(**kw), build_cls_transforms(**kw, defer_normalize=False)
    assert direct["after_transfer"] is None
    rng = np.random.default_rng(5)
    for stage in ("train", "eval"):
        for k in range(8):
            img = torch.from_numpy(rng.integers(0, 256, (3, 40 + 3 * k, 50), dtype=np.uint8))
            outs = []
            for tfs in (deferred, direct):
                torch.manual_seed(k), random.seed(k), np.random.seed(k)
                outs.append(tfs[stage]({"image": img, "label": 2})["image"])
            assert outs[0].dtype == torch.uint8 and outs[1].dtype == torch.float32
            batch = deferred["after_transfer"]({"image": outs[0][None], "label": torch.tensor([2])})
            assert torch.equal(batch["image"][0], outs[1]) and batch["label"].tolist() == [2]
    ms = build_cls_transforms(img_size=32, in_chans=13, mean=[0.1] * 13, std=[0.2] * 13, scale_to_unit=1e4)
    assert ms["after_transfer"] is None
    img = torch.from_numpy(rng.integers(0, 10000, (13, 40, 40)).astype(np.int16))
    assert ms["eval"]({"image": img})["image"].dtype == torch.float32


def _bits(t):
    """A float32 tensor's bit patterns (torch.equal holds -0.0 equal to 0.0; the padding must be +0.0)."""
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("task", ["seg", "cd"])
def test_dense_normalisation_after_the_transfer_gives_the_same_values(task):
    """Segmentation and change detection by default: uint8 images and masks from the workers, normalised,
    their padding zeroed and the mask cast by the datamodule's ``on_after_batch_transfer``: bit for bit
    the batch of the transforms normalising and padding themselves (mmseg's order: normalise, then pad
    with 0), train (images smaller and larger than the crop, so some are padded) and eval; images that are
    not 8-bit stay float and only their masks are cast."""
    from torch.utils.data import default_collate

    from rsbench.data.augment import UNPADDED_KEY
    from rsbench.data.seg_transforms import build_seg_transforms

    def factory(**kw):
        if task == "seg":
            return build_seg_transforms(img_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kw)
        return build_cd_transforms(img_size=32, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                   scale_to_unit=255.0, photometric=OPENCD, **kw)

    deferred, direct = factory(), factory(defer_normalize=False)
    assert direct["after_transfer"] is None
    keys = ("image",) if task == "seg" else ("image1", "image2")
    rng = np.random.default_rng(3)
    padded = 0
    for stage, sizes in (("train", [(20, 26), (24, 24), (40, 52), (31, 33)]), ("eval", [(28, 36)] * 3)):
        for h, w in sizes:
            inputs = [{**{k: torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)) for k in keys},
                       "mask": torch.from_numpy(rng.choice([0, 1, 255], (h, w)).astype(np.int64))} for _ in range(3)]
            outs = []
            for tfs in (deferred, direct):
                samples = []
                for i, sample in enumerate(inputs):
                    torch.manual_seed(100 * h + i)
                    samples.append(tfs[stage](sample))
                outs.append(default_collate(samples))
            raw, ref = outs
            assert all(raw[k].dtype == torch.uint8 for k in keys) and raw["mask"].dtype == torch.uint8
            got = deferred["after_transfer"](raw)
            assert UNPADDED_KEY not in got and set(got) == set(ref)
            for k in keys:
                assert got[k].dtype == torch.float32 and torch.equal(_bits(got[k]), _bits(ref[k]))
            assert got["mask"].dtype == torch.long and torch.equal(got["mask"], ref["mask"])
            padded += int(stage == "train" and min(h, w) < 32)
    assert padded >= 2  # the padding's zeros were compared
    ms = (build_seg_transforms(img_size=16, in_chans=4, scale_to_unit=1e4, mean=[0.1] * 4, std=[0.2] * 4)
          if task == "seg" else
          build_cd_transforms(img_size=16, in_chans=4, mean=[0.1] * 4, std=[0.2] * 4, scale_to_unit=1e4))
    img = torch.from_numpy(rng.integers(0, 10000, (4, 12, 12)).astype(np.int32))
    out = ms["train"]({**{k: img for k in keys}, "mask": torch.zeros(12, 12, dtype=torch.long)})
    assert out[keys[0]].dtype == torch.float32 and UNPADDED_KEY not in out
    batch = ms["after_transfer"](default_collate([out]))
    assert torch.equal(batch[keys[0]][0], out[keys[0]]) and batch["mask"].dtype == torch.long


def test_cls_eval_gives_the_rgb_normalised_values_of_a_known_image():
    """Slip caught: channels flipped to BGR before the backbone."""
    img = torch.tensor([200, 100, 50], dtype=torch.uint8)[:, None, None].expand(3, 64, 64).contiguous()
    out = _cls()({"image": img, "label": 3})
    assert out["label"] == 3 and out["image"].shape == (3, 56, 56)
    for c, v in enumerate(_official_norm((200, 100, 50))):
        assert torch.allclose(out["image"][c], torch.tensor(v, dtype=torch.float32), atol=1e-5)


def test_cls_eval_geometry_is_mmpretrain_resize_edge_then_center_crop():
    """``ResizeEdge(scale=img/0.875, edge='short', backend='pillow', interpolation='bicubic')`` then
    ``CenterCrop`` (mmcv: offset round((W - crop) / 2)), written from MMPretrain's source."""
    img = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    h, w = img.shape[:2]
    scale = 64  # img_size 56 / 0.875
    size = (scale, int(scale * h / w)) if w < h else (int(scale * w / h), scale)  # (width, height)
    ref = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC)).astype(np.float32)
    y0, x0 = round((ref.shape[0] - 56) / 2.0), round((ref.shape[1] - 56) / 2.0)
    ref = ref[y0:y0 + 56, x0:x0 + 56]
    ref = (ref - np.asarray(OFFICIAL_MEAN, np.float32)) / np.asarray(OFFICIAL_STD, np.float32)
    out = _cls()({"image": torch.from_numpy(img).permute(2, 0, 1)})["image"].permute(1, 2, 0).numpy()
    assert np.allclose(out, ref, atol=1e-4)


def _mmpretrain_erasing(img, r, prob, fill_color, fill_std, lo=0.02, hi=1 / 3, aspect=(3 / 10, 10 / 3)):
    """MMPretrain ``RandomErasing(mode='rand', fill_std=...)``.transform, from the source (numpy
    calls on ``r``; the normal draws from ``r.normal``)."""
    if r.random() > prob:
        return img
    h, w = img.shape[:2]
    log_aspect = np.log(np.array(aspect, dtype=np.float32))
    ratio = np.exp(r.uniform(*log_aspect))
    area = h * w * r.uniform(lo, hi)
    eh, ew = min(int(np.round(np.sqrt(area * ratio))), h), min(int(np.round(np.sqrt(area / ratio))), w)
    top = r.integers(0, h - eh) if h > eh else 0
    left = r.integers(0, w - ew) if w > ew else 0
    patch = np.clip(r.normal(fill_color, fill_std, (eh, ew, 3)).astype(np.int32), 0, 255).astype(np.uint8)
    out = img.copy()
    out[top:top + eh, left:left + ew] = patch
    return out


def test_random_erasing_is_mmpretrain_pixel_space_fill():
    from rsbench.data.transforms import RandomErasing

    fill, std = [255 * m for m in IMAGENET_MEAN], [255 * s for s in IMAGENET_STD]
    op = RandomErasing(0.25, fill, std)
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    erased = 0
    for seed in range(60):
        ref = _mmpretrain_erasing(img, np.random.default_rng(seed), 0.25, fill, std)
        out = op(img, np.random.default_rng(seed))
        assert np.array_equal(out, ref)
        erased += not np.array_equal(out, img)
    assert 5 < erased < 30
    # the fill is the RGB mean/std in pixel space: per-channel means of the erased pixels
    big = np.zeros((200, 200, 3), np.uint8)
    patch = RandomErasing(1.0, fill, std, min_area_ratio=0.3, max_area_ratio=0.3)(big, np.random.default_rng(0))
    vals = patch[patch.any(-1)].astype(float)
    assert np.allclose(vals.mean(0), np.asarray(OFFICIAL_MEAN) - 0.5, atol=2.5)


def test_cls_train_erases_before_normalisation():
    """Erased pixels are whole grey levels in 0..255 once un-normalised (MMPretrain erases the
    uint8 image); timm's N(0, 1) after normalisation, used before, is neither."""
    tf = _cls(train=True, randaugment=None, random_erasing=1.0)
    img = torch.full((3, 64, 64), 128, dtype=torch.uint8)
    torch.manual_seed(0)
    filled = []
    for _ in range(30):
        x = tf({"image": img})["image"]
        raw = (x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]) * 255
        assert (raw > -1e-3).all() and (raw < 255 + 1e-3).all()
        assert torch.allclose(raw, raw.round(), atol=2e-3)
        erased = (raw.round() != 128).any(0)
        assert erased.float().mean() >= 0.015  # something was erased
        filled.append(raw[:, erased].T)
    # filled with the RGB mean/std of the normalisation (R ~ 123.7, G ~ 116.3, B ~ 103.5), RGB order
    assert np.allclose(torch.cat(filled).mean(0).numpy(), np.asarray(OFFICIAL_MEAN) - 0.5, atol=3)


# -- per-band statistics (normalize: dataset) ----------------------------------------------------

def test_band_stats_equal_numpy_over_the_train_pixels(tmp_path):
    from rsbench.data.stats import band_stats

    rng = np.random.default_rng(0)
    ds = [{"image": torch.from_numpy(rng.integers(0, 3000, (4, h, w)).astype(np.int32) + 500 * np.arange(4)[:, None, None])}
          for h, w in ((8, 9), (12, 5), (7, 7))]
    pixels = np.concatenate([d["image"].numpy().reshape(4, -1) for d in ds], axis=1).astype(np.float64)
    mean, std = band_stats(ds)
    assert np.allclose(mean, pixels.mean(1), rtol=1e-10) and np.allclose(std, pixels.std(1), rtol=1e-10)
    cached = band_stats(ds, cache_dir=tmp_path, cache_key="x")
    assert np.allclose(cached, (mean, std)) and np.allclose(band_stats(ds, cache_dir=tmp_path, cache_key="x"), (mean, std))


def test_datamodule_normalises_by_train_band_stats_over_scale_to_unit(samples, tmp_path):
    from rsbench.data.datamodule import RSDataModule
    from rsbench.data.transforms import build_cls_transforms

    root = samples("eurosat_ms")
    dm = RSDataModule(dataset="eurosat_ms", root=root, splits={"train": "train", "test": "test"},
                      transforms=build_cls_transforms, batch_size=2, num_workers=0, normalize="dataset",
                      in_chans=13, scale_to_unit=10000.0, img_size=32, stats_key="image", cache_dir=tmp_path)
    dm.check()
    train = dm.raw["train"]
    pixels = np.concatenate([train[i]["image"].numpy().reshape(13, -1) for i in range(len(train))], 1).astype(np.float64)
    assert np.allclose(dm.mean, pixels.mean(1) / 10000.0, rtol=1e-9)
    assert np.allclose(dm.std, pixels.std(1) / 10000.0, rtol=1e-9)
    x = dm.datasets["test"][0]["image"]  # eval: centre crop of the resized image, then (x/1e4 - mean)/std
    assert x.shape == (13, 32, 32) and abs(float(x.mean())) < 3


class _OpenCVThreads(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        import cv2

        return cv2.getNumThreads()


@pytest.mark.parametrize("setting", [0, None])
def test_loader_workers_run_opencv_as_mmengine_sets_it(setting):
    """MMEngine's ``opencv_num_threads=0`` in every DataLoader worker (``data.opencv_threads``; null leaves
    OpenCV's default)."""
    import cv2
    from torch.utils.data import DataLoader

    from rsbench.data.datamodule import RSDataModule

    dm = RSDataModule(dataset="loveda", root="/nonexistent", splits={"train": "train"}, batch_size=1,
                      opencv_threads=setting)
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)  # a pool the workers inherit, whatever this machine's core count
    try:
        got = [int(v) for v in DataLoader(_OpenCVThreads(), batch_size=None, num_workers=2,
                                          worker_init_fn=dm._worker_init())]
    finally:
        cv2.setNumThreads(before)
    assert got == ([1, 1] if setting == 0 else [3, 3])  # 0: sequential, which OpenCV reports as 1


def test_the_sharing_strategy_is_set_when_the_loaders_are_built():
    from rsbench.data.datamodule import RSDataModule

    before = torch.multiprocessing.get_sharing_strategy()
    other = next(s for s in torch.multiprocessing.get_all_sharing_strategies() if s != before)
    try:
        for workers, expected in ((0, before), (2, other)):
            dm = RSDataModule(dataset="loveda", root="/nonexistent", splits={"train": "train"}, batch_size=1,
                              num_workers=workers, sharing_strategy=other)
            dm._worker_init()
            assert torch.multiprocessing.get_sharing_strategy() == expected
    finally:
        torch.multiprocessing.set_sharing_strategy(before)


def test_an_unknown_sharing_strategy_is_named_before_any_loader_starts():
    from rsbench.data.datamodule import RSDataModule
    from rsbench.errors import ConfigError

    with pytest.raises(ConfigError, match="data.sharing_strategy must be one of .*'file_system'.*got 'shm'"):
        RSDataModule(dataset="loveda", root="/nonexistent", splits={"train": "train"}, batch_size=1,
                     sharing_strategy="shm")
