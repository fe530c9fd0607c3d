"""Augmentation pipelines of the recipes: segmentation (mmseg) and change detection (Open-CD)."""

from __future__ import annotations

import random

import numpy as np
import torch

from rsbench.data.cd_transforms import CDTransform, build_cd_transforms, photometric_distortion, random_crop_cat_max
from rsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD


# -- segmentation -------------------------------------------------------------------------------

def _tf(**kw):
    from rsbench.data.seg_transforms import build_seg_transforms

    return build_seg_transforms(img_size=kw.pop("img_size", 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), **kw)


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

        def randint(self, a, b):
            self.calls += 1
            return b // 2

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
    assert cat_max_ratio_crop_box(uniform[:10, :12], (20, 20), random.Random(0), 0.75) == (0, 20, 0, 20)


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
    common = dict(train=True, img_size=32, rotate_prob=0, flip_prob=0, cat_max_ratio=1.0, photometric=None)
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
    rng = np.random.default_rng(0)
    mask = np.zeros((256, 256), np.uint8)
    mask[:64, :64] = 1
    for _ in range(20):
        y1, y2, x1, x2 = random_crop_cat_max(mask, 64, 0.75, rng)
        assert (y2 - y1, x2 - x1) == (64, 64)
    wins = [random_crop_cat_max(mask, 64, 0.75, np.random.default_rng(s)) for s in range(50)]
    mixed = [0 < mask[a:b, c:d].mean() < 0.75 for a, b, c, d in wins]
    assert np.mean(mixed) > 0.5  # a random window is mixed far less often (~5 %)
    # all one class: gives up after 10 retries; smaller image than crop: the whole image
    assert random_crop_cat_max(np.zeros((64, 64), np.uint8), 32, 0.75, rng)[1] - 0 <= 64
    assert random_crop_cat_max(np.zeros((20, 30), np.uint8), 32, 0.75, rng) == (0, 32, 0, 32)


def test_small_images_are_padded_with_ignore():
    tf = CDTransform(train=True, img_size=40, rotate_prob=0, flip_prob=0, photometric=None, exchange_prob=0)
    o = tf(_sample(size=32))
    assert o["image1"].shape == (3, 40, 40) and (o["mask"][32:] == 255).all() and (o["mask"][:, 32:] == 255).all()


def test_photometric_distortion_per_date():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    outs = [photometric_distortion(img, rng) for _ in range(20)]
    assert all(o.dtype == np.uint8 and o.shape == img.shape for o in outs)
    assert any(not np.array_equal(o, img) for o in outs)
    assert max(np.abs(o.astype(int) - img).mean() for o in outs) < 40  # mild: ±10 brightness, ×0.8–1.2


def test_eval_transform_normalises_only_and_resizes_images_for_oscd():
    tfs = build_cd_transforms(img_size=64, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_to_unit=255.0,
                              resize=64, photometric={"hue_delta": 10})
    s = _sample(size=32)
    o = tfs["eval"](s)
    assert o["image1"].shape == (3, 64, 64) and torch.equal(o["mask"], s["mask"])  # metric at label size
    plain = build_cd_transforms(img_size=64, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_to_unit=255.0)
    o = plain["eval"](s)
    assert torch.allclose(o["image1"], _norm(10.0).expand(3, 32, 32)) and torch.equal(o["mask"], s["mask"])
