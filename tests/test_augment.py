"""Augmentation pipelines of the recipes: segmentation (mmseg) and change detection (Open-CD)."""

from __future__ import annotations

import random

import numpy as np
import torch

from rsbench.constants import IMAGENET_MEAN, IMAGENET_STD
from rsbench.data.augment import PhotoMetric, cat_max_ratio_crop_box
from rsbench.data.cd_transforms import CDTransform, build_cd_transforms

OPENCD_PHOTOMETRIC = {"brightness_delta": 10, "contrast_range": (0.8, 1.2), "saturation_range": (0.8, 1.2),
                      "hue_delta": 10}


# -- segmentation -------------------------------------------------------------------------------

def _tf(**kw):
    """The worker's side with the normalisation in it (the factory's default defers it, tested in
    test_fidelity_augment)."""
    from rsbench.data.seg_transforms import build_seg_transforms

    return build_seg_transforms(**{"img_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                   "defer_normalize": False, **kw})


def test_train_transform_keeps_image_and_mask_aligned():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    label = np.kron(rng.integers(0, 5, (6, 7)), np.ones((9, 9), np.int64))  # 54×63 blocks of classes
    image = torch.from_numpy(np.repeat((label * 40 + 20).astype(np.uint8)[None], 3, 0))
    tf = _tf(photometric=False)["train"]
    for _ in range(20):
        out = tf({"image": image, "mask": torch.from_numpy(label)})
        img, m = out["image"], out["mask"]
        assert img.shape == (3, 32, 32) and m.shape == (32, 32) and img.dtype == torch.float32 and m.dtype == torch.long
        raw = ((img[0] * 0.5 + 0.5) * 255).round().long()
        inner = m.clone()
        # compare only away from class borders (bilinear vs nearest) and padding
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                inner[torch.roll(m, (dy, dx), (0, 1)) != m] = -1
        inner[0, :] = inner[-1, :] = inner[:, 0] = inner[:, -1] = -1
        sel = (inner >= 0) & (inner != 255)
        assert torch.equal(raw[sel], m[sel] * 40 + 20)
        pad = m == 255
        assert torch.all(img[:, pad] == 0)  # padded image pixels are 0 after normalisation


def test_train_transform_pads_small_images_and_rescales_relative_to_the_crop():
    from rsbench.data.seg_transforms import rescale_size

    assert rescale_size(1024, 1024, (256, 256)) == (256, 256)
    assert rescale_size(406, 439, (384, 384)) == (355, 384)
    tf = _tf(img_size=64, ratio_range=(0.5, 0.5), photometric=False, flip_prob=0)["train"]
    out = tf({"image": torch.full((3, 40, 80), 200, dtype=torch.uint8), "mask": torch.ones(40, 80, dtype=torch.long)})
    # long side 80 → 32 (0.5 × 64), so 16×32 of content padded to 64×64
    assert out["mask"].shape == (64, 64)
    assert (out["mask"][:16, :32] == 1).all() and (out["mask"][16:] == 255).all() and (out["mask"][:, 32:] == 255).all()
    assert (out["image"][:, 16:] == 0).all()


def test_cat_max_ratio_crop_retries_like_mmseg():
    from rsbench.data.seg_transforms import cat_max_ratio_crop_box

    class Rng:
        def __init__(self):
            self.calls = 0

        def integers(self, a, b):  # numpy Generator API: high exclusive
            self.calls += 1
            return (b - 1) // 2

    uniform = np.zeros((50, 50), np.uint8)
    r = Rng()
    box = cat_max_ratio_crop_box(uniform, (20, 20), r, 0.75)
    assert r.calls == 2 * 11 and box == (15, 35, 15, 35)  # 1 draw + 10 retries, the last kept
    mixed = np.zeros((50, 50), np.uint8)
    mixed[:, 25:] = 1
    mixed[:5] = 255
    r = Rng()
    assert cat_max_ratio_crop_box(mixed, (20, 20), r, 0.75) == (15, 35, 15, 35) and r.calls == 2
    r = Rng()
    cat_max_ratio_crop_box(mixed, (20, 20), r, 1.0)
    assert r.calls == 2  # no retries when disabled
    # a crop larger than the image keeps the whole extent
    assert cat_max_ratio_crop_box(uniform[:10, :12], (20, 20), np.random.default_rng(0), 0.75) == (0, 20, 0, 20)


def test_photometric_distortion_matches_mmseg_ops():
    from rsbench.data.seg_transforms import PhotoMetricDistortion

    pmd = PhotoMetricDistortion()
    img = np.arange(0, 256, dtype=np.uint8)[None, :, None].repeat(3, 2).repeat(4, 0)
    out = pmd.apply(img, brightness=20.0, contrast_first=True, contrast=None)
    assert np.array_equal(out, np.clip(img.astype(np.float32) + 20, 0, 255).astype(np.uint8))
    out = pmd.apply(img, contrast_first=False, contrast=1.5)
    assert np.array_equal(out, np.clip(img.astype(np.float32) * 1.5, 0, 255).astype(np.uint8))
    grey = pmd.apply(img, saturation=0.0)  # a grey ramp has no saturation to change
    assert np.abs(grey.astype(int) - img).max() <= 1
    params = [pmd.get_params() for _ in range(200)]
    assert {p["hue"] for p in params if p["hue"] is not None} <= set(range(-18, 18))
    assert all(-32 <= p["brightness"] <= 32 for p in params if p["brightness"] is not None)
    assert 60 < sum(p["contrast"] is None for p in params) < 140


def test_transforms_are_reproducible_under_a_torch_seed_and_eval_is_identity_geometry():
    tf = _tf()
    sample = {"image": torch.randint(0, 255, (3, 50, 60), dtype=torch.uint8), "mask": torch.randint(0, 3, (50, 60))}
    torch.manual_seed(3)
    a = [tf["train"](sample)["image"] for _ in range(3)]
    torch.manual_seed(3)
    b = [tf["train"](sample)["image"] for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], a[1])
    ev = tf["eval"](sample)
    assert ev["image"].shape == (3, 50, 60) and torch.equal(ev["mask"], sample["mask"])
    assert torch.allclose(ev["image"], (sample["image"].float() / 255 - 0.5) / 0.5, atol=1e-5)
    assert "mask" not in tf["eval"]({"image": sample["image"]})


# -- change detection -------------------------------------------------------------------------

def _sample(v1=10, v2=200, size=32):
    m = torch.zeros(size, size, dtype=torch.long)
    m[4:12, 4:20] = 1
    return {"image1": torch.full((3, size, size), v1, dtype=torch.uint8),
            "image2": torch.full((3, size, size), v2, dtype=torch.uint8), "mask": m}


def _norm(v):
    return (v / 255.0 - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def test_date_exchange_swaps_the_dates_only():
    common = {"train": True, "img_size": 32, "rotate_prob": 0, "flip_prob": 0, "cat_max_ratio": 1.0, "photometric": None}
    s = _sample()
    swapped = CDTransform(exchange_prob=1.0, **common)(s)
    assert torch.allclose(swapped["image1"], _norm(200.0).expand(3, 32, 32))
    assert torch.allclose(swapped["image2"], _norm(10.0).expand(3, 32, 32))
    assert torch.equal(swapped["mask"], s["mask"])
    kept = CDTransform(exchange_prob=0.0, **common)(s)
    assert torch.allclose(kept["image1"], _norm(10.0).expand(3, 32, 32))
    torch.manual_seed(0)
    tf = CDTransform(exchange_prob=0.5, **common)
    firsts = [float(tf(s)["image1"][0, 0, 0]) for _ in range(200)]
    n_swapped = sum(abs(f - float(_norm(200.0)[0, 0, 0])) < 1e-5 for f in firsts)
    assert 60 < n_swapped < 140  # about half, and each output is one whole date or the other
    assert n_swapped + sum(abs(f - float(_norm(10.0)[0, 0, 0])) < 1e-5 for f in firsts) == 200


def test_same_geometry_for_both_dates_and_mask():
    torch.manual_seed(1)
    size = 48
    m = torch.zeros(size, size, dtype=torch.long)
    m[5:20, 8:30] = 1
    img = (m * 180 + 30).to(torch.uint8).expand(3, size, size).contiguous()
    s = {"image1": img, "image2": img.clone(), "mask": m}
    tf = CDTransform(train=True, img_size=40, rotate_prob=0.5, flip_prob=1.0, cat_max_ratio=0.75, exchange_prob=0.5,
                     photometric=None)
    for _ in range(20):
        o = tf(s)
        assert o["image1"].shape == (3, 40, 40) and o["mask"].shape == (40, 40)
        assert torch.equal(o["image1"], o["image2"])
        bright = o["image1"][0] > float(_norm(105.0)[0, 0, 0])
        lab = o["mask"] != 255
        agree = (bright[lab] == (o["mask"][lab] == 1)).float().mean()
        assert agree > 0.97  # rotation interpolation blurs only the borders of the region


def test_crop_retries_for_mixed_windows_like_mmseg():
    # the exact window of a known generator state: tests/test_fidelity_augment.py
    rng = np.random.default_rng(0)
    mask = np.zeros((256, 256), np.uint8)
    mask[:64, :64] = 1
    wins = [cat_max_ratio_crop_box(mask, 64, np.random.default_rng(s), 0.75) for s in range(50)]
    mixed = [0 < mask[a:b, c:d].mean() < 0.75 for a, b, c, d in wins]
    assert np.mean(mixed) > 0.5  # a random window is mixed far less often (~5 %)
    # smaller image than crop: the whole image
    assert cat_max_ratio_crop_box(np.zeros((20, 30), np.uint8), 32, rng, 0.75) == (0, 32, 0, 32)


def test_small_images_are_padded_with_ignore():
    tf = CDTransform(train=True, img_size=40, rotate_prob=0, flip_prob=0, photometric=None, exchange_prob=0)
    o = tf(_sample(size=32))
    assert o["image1"].shape == (3, 40, 40) and (o["mask"][32:] == 255).all() and (o["mask"][:, 32:] == 255).all()


def test_photometric_distortion_per_date():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    outs = [PhotoMetric(**OPENCD_PHOTOMETRIC)(img, rng) for _ in range(20)]
    assert all(o.dtype == np.uint8 and o.shape == img.shape for o in outs)
    assert any(not np.array_equal(o, img) for o in outs)
    assert max(np.abs(o.astype(int) - img).mean() for o in outs) < 40  # mild: ±10 brightness, ×0.8–1.2


def test_eval_transform_normalises_only_and_resizes_images_for_oscd():
    tfs = build_cd_transforms(img_size=64, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_to_unit=255.0,
                              resize=64, photometric={"hue_delta": 10}, defer_normalize=False)
    s = _sample(size=32)
    o = tfs["eval"](s)
    assert o["image1"].shape == (3, 64, 64) and torch.equal(o["mask"], s["mask"])  # metric at label size
    plain = build_cd_transforms(img_size=64, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_to_unit=255.0,
                                defer_normalize=False)
    o = plain["eval"](s)
    assert torch.allclose(o["image1"], _norm(10.0).expand(3, 32, 32)) and torch.equal(o["mask"], s["mask"])


# -- one implementation for both pipelines -------------------------------------------------------

def _coordinates(h, w):
    """(H, W, 3) uint8 image whose pixels say where they are (row, column, 0)."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy, xx, np.zeros_like(yy)], -1).astype(np.uint8)


def test_seg_and_cd_crop_are_the_same_op_and_choose_the_same_window():
    from rsbench.data import augment, cd_transforms, seg_transforms

    assert seg_transforms.cat_max_ratio_crop_box is augment.cat_max_ratio_crop_box
    assert cd_transforms.cat_max_ratio_crop_box is augment.cat_max_ratio_crop_box
    mask = np.zeros((60, 90), np.uint8)  # asymmetric: a class-1 block near the top right, an ignored band
    mask[5:25, 55:85] = 1
    mask[50:, :] = 255
    img = _coordinates(60, 90)
    seg_crop = seg_transforms.CatMaxRatioCrop(24, 24, cat_max_ratio=0.75)
    cd = CDTransform(train=True, img_size=24, cat_max_ratio=0.75)
    windows, mixed = set(), 0
    for s in range(30):
        seg_crop.set_random_state(np.random.default_rng(s), random.Random(s))
        o = seg_crop(image=img, mask=mask)
        a, b, m = cd.crop(img, img.copy(), mask, np.random.default_rng(s))
        assert np.array_equal(o["image"], a) and np.array_equal(o["image"], b) and np.array_equal(o["mask"], m)
        windows.add((int(a[0, 0, 0]), int(a[0, 0, 1])))
        mixed += 0 < (m == 1).sum() / max((m != 255).sum(), 1) < 0.75
    assert len(windows) > 10 and mixed > 20  # the retries find the rare mixed windows


def test_seg_and_cd_photometric_are_the_same_op_with_their_own_parameters():
    from rsbench.data.seg_transforms import PhotoMetricDistortion

    img = np.random.default_rng(2).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    seg = PhotoMetricDistortion(**OPENCD_PHOTOMETRIC)
    cd = CDTransform(train=True, img_size=12, photometric=OPENCD_PHOTOMETRIC)
    assert cd.photometric == PhotoMetric(**OPENCD_PHOTOMETRIC) == seg.op
    assert CDTransform(train=True, img_size=12, photometric=True).photometric == PhotoMetric()  # mmseg's
    for s in range(20):
        seg.set_random_state(np.random.default_rng(s), random.Random(s))
        assert np.array_equal(seg.apply(img, **seg.get_params()), cd.photometric(img, np.random.default_rng(s)))
    # the two dates of one CD call get their own draws
    rng = np.random.default_rng(0)
    pairs = [(cd.photometric(img, rng), cd.photometric(img, rng)) for _ in range(10)]
    assert any(not np.array_equal(a, b) for a, b in pairs)
    # multispectral / non-8-bit data: no colour ops in either pipeline
    assert CDTransform(train=True, img_size=12, in_chans=4, mean=[0] * 4, std=[1] * 4,
                       photometric=OPENCD_PHOTOMETRIC).photometric is None
    ops = _tf(in_chans=4, scale_to_unit=10000.0, mean=[0] * 4, std=[1] * 4)
    assert not any(isinstance(t, PhotoMetricDistortion) for t in ops["train"].pipeline.transforms)


def test_photometric_saturation_and_hue_are_two_hsv_round_trips_as_mmseg():
    from rsbench.data.augment import apply_photometric

    img = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    both = apply_photometric(img, saturation=1.15, hue=7)
    assert np.array_equal(both, apply_photometric(apply_photometric(img, saturation=1.15), hue=7))


def test_both_pipelines_take_one_torch_draw_per_call():
    seg = _tf()["train"]
    cd = CDTransform(train=True, img_size=24, photometric=OPENCD_PHOTOMETRIC)
    seg_sample = {"image": torch.randint(0, 255, (3, 40, 40), dtype=torch.uint8), "mask": torch.randint(0, 3, (40, 40))}
    cd_sample = _sample(size=40)
    torch.manual_seed(7)
    torch.randint(0, 2**31 - 1, ())
    expected = torch.rand(4)
    for tf, sample in ((seg, seg_sample), (cd, cd_sample)):
        torch.manual_seed(7)
        first = tf(sample)
        assert torch.equal(torch.rand(4), expected)  # exactly one draw from torch's generator
        torch.manual_seed(7)
        again = tf(sample)
        assert all(torch.equal(first[k], again[k]) for k in first)


def test_normalisation_and_padding_are_shared():
    img = torch.randint(0, 255, (3, 20, 20), dtype=torch.uint8)
    seg = _tf(img_size=20, mean=IMAGENET_MEAN, std=IMAGENET_STD)["eval"]({"image": img})["image"]
    cd = CDTransform(train=False, img_size=20)({"image1": img, "image2": img, "mask": torch.zeros(20, 20, dtype=torch.long)})
    assert torch.equal(seg, cd["image1"]) and torch.allclose(seg, _norm(img.float()), atol=1e-5)
    # images smaller than the crop: padded after normalisation (0) in both, mask 255
    tf = CDTransform(train=True, img_size=24, rotate_prob=0, flip_prob=0, exchange_prob=0, photometric=None)
    o = tf(_sample(size=20))
    assert (o["image1"][:, 20:] == 0).all() and (o["image2"][:, :, 20:] == 0).all() and (o["mask"][20:] == 255).all()



def test_ops_of_one_seg_call_draw_from_one_stream():
    """albumentations' set_random_seed gives each op the same stream (the flip was then decided by
    the resize ratio's draw); SegTransform shares one stream between the ops instead."""
    import albumentations as A

    from rsbench.data.augment import Normalize
    from rsbench.data.seg_transforms import RandomResize, SegTransform

    tf = SegTransform(A.Compose([RandomResize(64, (0.5, 2.0)), A.HorizontalFlip(p=0.5)]), Normalize())
    img = torch.zeros(3, 64, 64, dtype=torch.uint8)
    img[:, :, :8] = 255
    torch.manual_seed(0)
    rows = []
    for _ in range(200):
        o = tf({"image": img})["image"]
        rows.append((o.shape[1] < 80, bool(o[0, :, -1].mean() > o[0, :, 0].mean())))
    small = [f for s, f in rows if s]
    large = [f for s, f in rows if not s]
    assert 0.25 < np.mean(small) < 0.75 and 0.25 < np.mean(large) < 0.75
