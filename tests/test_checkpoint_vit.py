"""Loading MTP / MAE / finetuned checkpoints into the ViT+RVSA backbones.

Checkpoints are written in the released files' key layout: the encoder's ``state_dict`` has
``patch_embed.proj.*``, ``pos_embed`` (1, N, C) without cls token, ``blocks.{i}.*`` (RVSA blocks with
``rel_pos_h/w``, ``relative_position_bias_table``, ``relative_position_index``,
``sampling_{offsets,scales,angles}.2.*``; global blocks with ``full_attn_rel_pos_h/w``), ``norm.*``
and ``fpn1.{0,1.ln,3}.*``, ``fpn2.0.*`` (tests/test_vit_rvsa.py checks this set against the
official module's keys), saved as ``{'epoch', 'iteration', 'state_dict', ...}`` by
``Multi-Task_Pretrain/main_pretrain.py``. Files are loaded with the one loader,
``load_checkpoint(model, path, filter_fn=model.checkpoint_filter_fn)``, into the rsbench equivalents
of the official copies (``COPIES``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsbench.errors import WeightsError
from rsbench.models import build_backbone
from rsbench.models.checkpoint import load_checkpoint

ARCH = dict(embed_dim=32, depth=4, num_heads=2, out_indices=[0, 1, 2, 3], interval=2)
ENCODER_FILE = "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth"
# the official copies as rsbench builds them: raw maps (cls), the fpn pyramid (seg), no global rel-pos (det)
COPIES = {"cls": {"features": "maps"}, "seg": {"features": "pyramid"}, "det": {"features": "pyramid", "rel_pos": False}}


def _vit(img_size=224, variant="cls", **kw):
    """ViT-B+RVSA as the official ``variant`` copy."""
    return build_backbone("vitb_rvsa", img_size=img_size, **{**COPIES[variant], **kw})


def _load(model, source, allow_missing=False):
    return load_checkpoint(model, source, filter_fn=model.checkpoint_filter_fn, allow_missing=allow_missing)


def released_state_dict(img=224, seed=0, **arch):
    """A random encoder state dict with exactly the released keys for an ``img`` px checkpoint."""
    torch.manual_seed(seed)
    m = _vit(img_size=img, variant="seg", **{**ARCH, **arch})
    sd = {k: (torch.randn_like(v) if v.dtype.is_floating_point else v.clone()) for k, v in m.state_dict().items()}
    sd["norm.weight"] = torch.ones(ARCH["embed_dim"])
    sd["norm.bias"] = torch.zeros(ARCH["embed_dim"])
    return sd


def assert_loaded(model, sd):
    own = model.state_dict()
    for k, v in own.items():
        torch.testing.assert_close(v, sd[k], msg=k)


def _save(tmp_path, obj, name=ENCODER_FILE):
    path = tmp_path / name
    torch.save(obj, path)
    return path


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {"epoch": 1, "iteration": 9, "state_dict": sd, "optimizer": {}, "scheduler": {}},
                     id="mtp_state_dict"),
        pytest.param(lambda sd: {"model": sd, "epoch": 3}, id="model"),
        pytest.param(lambda sd: sd, id="raw"),
        pytest.param(lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}}, id="module."),
        pytest.param(lambda sd: {"state_dict": {"encoder." + k: v for k, v in sd.items()}}, id="encoder."),
        pytest.param(lambda sd: {"state_dict": {"backbone." + k: v for k, v in sd.items()}}, id="backbone."),
        pytest.param(lambda sd: {"model": {"module.encoder." + k: v for k, v in sd.items()}}, id="module.encoder."),
    ],
)
@pytest.mark.parametrize("variant", ["cls", "seg", "det"])
def test_round_trip_formats(tmp_path, wrap, variant):
    sd = released_state_dict()
    path = _save(tmp_path, wrap(sd))
    model = _vit(img_size=224, variant=variant, **ARCH)
    report = _load(model, path)
    assert report.missing == [] and report.unexpected == []
    assert_loaded(model, sd)
    ignored = set(report.ignored)
    assert {"norm.weight", "norm.bias"} <= ignored
    if variant == "cls":  # no fpn parameters in the stride-16 variant
        assert {k for k in sd if k.startswith("fpn")} <= ignored
    if variant == "det":  # global attention without rel-pos
        assert {k for k in sd if "full_attn_rel_pos" in k} <= ignored
    assert str(path) in report.summary()


def test_whole_mtp_model_file_keeps_encoder_only(tmp_path):
    sd = released_state_dict()
    whole = {"encoder." + k: v for k, v in sd.items()}
    whole.update({
        "semsegdecoder.fpn_convs.0.conv.weight": torch.randn(256, 256, 3, 3),
        "semseghead_1.weight": torch.randn(3, 256, 1, 1),
        "inssegdecoder.roi_head.weight": torch.randn(4, 4),
        "rotdetdecoder.rpn_head.rpn_conv.weight": torch.randn(4, 4),
        "rotdethead.fc.weight": torch.randn(4),
    })
    path = _save(tmp_path, {"epoch": 80, "state_dict": whole}, "last_vit_b_rvsa_ss_is_rd_pretrn_model.pth")
    model = _vit(img_size=224, variant="seg", **ARCH)
    report = _load(model, path)
    assert report.missing == [] and report.unexpected == []
    assert not any("decoder" in k or "head" in k for k in report.loaded)
    assert_loaded(model, sd)


def test_finetuned_mm_checkpoint_keeps_backbone_only(tmp_path):
    sd = released_state_dict()
    ft = {"backbone." + k: v for k, v in sd.items()}
    ft["decode_head.conv_seg.weight"] = torch.randn(7, 512, 1, 1)
    ft["auxiliary_head.conv_seg.weight"] = torch.randn(7, 256, 1, 1)
    path = _save(tmp_path, {"meta": {}, "state_dict": ft}, "iter_80000.pth")
    model = _vit(img_size=224, variant="seg", **ARCH)
    report = _load(model, path)
    assert report.unexpected == [] and report.missing == []


def _official_pos_resize(pos, new):
    """The official loader: reshape to a square grid, bicubic, align_corners=False."""
    n, c = pos.shape[1], pos.shape[2]
    old = int(n**0.5)
    t = pos.reshape(-1, old, old, c).permute(0, 3, 1, 2)
    t = F.interpolate(t, size=(new, new), mode="bicubic", align_corners=False)
    return t.permute(0, 2, 3, 1).flatten(1, 2)


def _official_rel_resize(table, length):
    t = F.interpolate(table.reshape(1, 1, *table.shape), size=(length, table.shape[1]), mode="bicubic",
                      align_corners=False)
    return t.squeeze()


@pytest.mark.parametrize("img", [224, 256, 512])
def test_pos_embed_and_rel_pos_interpolated_from_448(tmp_path, img):
    """A ViT-L MTP checkpoint is 448 px (28×28 tokens); finetuning sizes differ."""
    sd = released_state_dict(img=448)
    assert sd["pos_embed"].shape == (1, 784, 32) and sd["blocks.1.attn.full_attn_rel_pos_h"].shape == (55, 16)
    path = _save(tmp_path, {"state_dict": sd})
    model = _vit(img_size=img, variant="cls", **ARCH)
    report = _load(model, path)
    g = img // 16
    assert model.pos_embed.shape == (1, g * g, 32)
    torch.testing.assert_close(model.pos_embed.data, _official_pos_resize(sd["pos_embed"], g), rtol=1e-5, atol=1e-6)
    for k in ("blocks.1.attn.full_attn_rel_pos_h", "blocks.3.attn.full_attn_rel_pos_w"):
        want = _official_rel_resize(sd[k], 2 * g - 1)
        torch.testing.assert_close(model.state_dict()[k], want, rtol=1e-5, atol=1e-6)
        assert k in report.resized
    assert "pos_embed" in report.resized
    # RVSA window tables (7×7 windows) are never resized
    torch.testing.assert_close(model.blocks[0].attn.rel_pos_h.data, sd["blocks.0.attn.rel_pos_h"])
    # the det variant ignores the global rel-pos tables instead of resizing them
    det = _vit(img_size=img, variant="det", **ARCH)
    rep = _load(det, path)
    assert rep.unexpected == [] and "blocks.1.attn.full_attn_rel_pos_h" in rep.ignored


@pytest.mark.parametrize("img", [224, 320])
def test_mae_checkpoint_with_cls_token(tmp_path, img):
    """MAE checkpoints carry a cls token and a (1, 1+N, C) pos_embed; the cls position is dropped."""
    sd = released_state_dict()
    del sd["norm.weight"], sd["norm.bias"]
    cls_pos = torch.full((1, 1, 32), 100.0)
    mae = dict(sd)
    mae["pos_embed"] = torch.cat([cls_pos, sd["pos_embed"]], dim=1)
    mae["cls_token"] = torch.randn(1, 1, 32)
    mae["mask_token"] = torch.randn(1, 1, 32)
    mae["norm.weight"], mae["norm.bias"] = torch.ones(32), torch.zeros(32)
    path = _save(tmp_path, {"model": mae}, "mae_pretrain_vit_b_rvsa.pth")
    model = _vit(img_size=img, variant="seg", **ARCH)
    report = _load(model, path)
    assert report.missing == [] and report.unexpected == []
    assert {"cls_token", "mask_token"} <= set(report.ignored)
    want = _official_pos_resize(sd["pos_embed"], img // 16) if img != 224 else sd["pos_embed"]
    torch.testing.assert_close(model.pos_embed.data, want, rtol=1e-5, atol=1e-6)
    assert model.pos_embed.abs().max() < 50  # the cls position (100) is not in it


def test_missing_keys_raise_unless_allowed(tmp_path):
    sd = released_state_dict()
    for k in [k for k in sd if "sampling_offsets" in k or k == "blocks.2.mlp.fc1.weight"]:
        del sd[k]
    path = _save(tmp_path, {"state_dict": sd})
    with pytest.raises(WeightsError, match="sampling_offsets|mlp.fc1"):
        _load(_vit(img_size=224, **ARCH), path)
    report = _load(_vit(img_size=224, **ARCH), path, allow_missing=True)
    assert "blocks.2.mlp.fc1.weight" in report.missing and len(report.missing) == 5
    # the builder passes allow_missing through
    m = build_backbone("vitb_rvsa", img_size=224, pretrained=str(path), allow_missing=True, **ARCH)
    assert m.load_report.missing


def test_relative_position_index_may_be_absent(tmp_path):
    sd = {k: v for k, v in released_state_dict().items() if "relative_position_index" not in k}
    report = _load(_vit(img_size=224, **ARCH), _save(tmp_path, sd))
    assert report.missing == []


def test_wrong_architecture_is_a_clear_error(tmp_path):
    path = _save(tmp_path, {"state_dict": released_state_dict(embed_dim=64, num_heads=4)})
    with pytest.raises(WeightsError, match="do not fit"):
        _load(_vit(img_size=224, **ARCH), path)


def test_mtp_tag_with_absent_file_names_file_and_folder(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    with pytest.raises(WeightsError) as e:
        build_backbone("vitb_rvsa", img_size=224, pretrained="mtp", weights_dir=folder, **ARCH)
    msg = str(e.value)
    assert ENCODER_FILE in msg and str(folder.resolve()) in msg
    with pytest.raises(WeightsError, match="last_vit_l_rvsa_ss_is_rd_pretrn_model_encoder.pth"):
        build_backbone("vitl_rvsa", img_size=224, pretrained="mtp", weights_dir=folder, **ARCH)


def test_mtp_tag_loads_the_released_file(tmp_path):
    sd = released_state_dict()
    _save(tmp_path, {"epoch": 0, "iteration": 0, "state_dict": sd})
    m = build_backbone("vitb_rvsa", img_size=224, pretrained="mtp", weights_dir=tmp_path, features="pyramid", **ARCH)
    assert m.load_report.missing == [] and m.load_report.unexpected == []
    assert_loaded(m, sd)


def test_thirteen_band_input_repeats_rgb_kernels(tmp_path):
    """timm adapt_input_conv: channel c gets RGB kernel c mod 3, scaled by 3/13."""
    sd = released_state_dict()
    path = _save(tmp_path, {"state_dict": sd})
    model = _vit(img_size=224, in_chans=13, **ARCH)
    report = _load(model, path)
    assert report.missing == [] and "patch_embed.proj.weight" in report.resized
    w, w3 = model.patch_embed.proj.weight.data, sd["patch_embed.proj.weight"]
    for c in range(13):
        torch.testing.assert_close(w[:, c], w3[:, c % 3] * 3 / 13)
    # with a multiple of 3 bands, an image that repeats its RGB bands responds like the RGB one
    six = _vit(img_size=224, in_chans=6, **ARCH)
    _load(six, path)
    x3 = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(six.patch_embed.proj(torch.cat([x3, x3], 1)), F.conv2d(x3, w3, sd["patch_embed.proj.bias"], stride=16),
                               rtol=1e-4, atol=1e-5)
    # the official pretraining loader's behaviour instead: random patch embedding
    fresh = _vit(img_size=224, in_chans=13, in_chans_adapt="drop", **ARCH)
    before = fresh.patch_embed.proj.weight.detach().clone()
    rep = _load(fresh, path)
    assert torch.equal(fresh.patch_embed.proj.weight, before)
    assert "patch_embed.proj.weight" in rep.missing  # reported, not an error
