"""DetectionTask: the backbone stored once, the ViT's layer decay through the detector, the batch shape."""

from __future__ import annotations

import pytest
import torch

from rsbench.models.layer_decay import param_groups
from rsbench.tasks.detection import DetectionTask, collate_detection

OPTIM = {"lr": 1e-4, "weight_decay": 0.05, "layer_decay": 0.9}
SCHED = {"name": "multistep", "milestones": [8, 11], "warmup_steps": 500}


def _task(name="resnet18", detector="faster_rcnn", img_size=64, **bb):
    return DetectionTask(backbone={"name": name, "pretrained": None, "features": "pyramid", **bb}, optim=OPTIM,
                         sched=SCHED, img_size=img_size, num_classes=3, class_names=["a", "b", "c"],
                         detector={"name": detector})


@pytest.mark.parametrize("detector", ["faster_rcnn", "retinanet"])
def test_backbone_weights_stored_once(detector):
    task = _task(detector=detector)
    keys = list(task.state_dict())
    params = dict(task.named_parameters())
    assert task.backbone is task.detector.backbone.body and "backbone" not in dict(task.named_children())
    assert not any(k.startswith("backbone.") for k in keys)  # not a second copy beside detector.backbone.body
    n_backbone = sum(1 for _ in task.backbone.parameters())
    assert sum(k.startswith(task.backbone_prefix) for k in params) == n_backbone > 0
    # a checkpoint of the task loads back into a fresh one
    other = _task(detector=detector)
    other.load_state_dict(task.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(task.state_dict().values(), other.state_dict().values()))


def test_vit_layer_decay_reaches_through_the_detector():
    """LayerDecayOptimizerConstructor_ViT on the detector: embeddings 0.9^13, block i 0.9^(12-i), FPN and heads 1."""
    task = _task("vitb_rvsa", img_size=112, kwargs={"depth": 4, "embed_dim": 64, "num_heads": 2,
                                                     "out_indices": [0, 1, 2, 3], "interval": 2},
                 task_kwargs={"rel_pos": False})
    groups = param_groups(task.named_parameters(), backbone=task.backbone, backbone_prefix=task.backbone_prefix,
                          lr=1e-4, weight_decay=0.05, layer_decay=0.9)
    ids = {pid for g in groups for pid in map(id, g["params"])}
    assert ids == {id(p) for p in task.parameters()}  # every parameter in exactly one group
    by_param = {id(p): g["lr"] / 1e-4 for g in groups for p in g["params"]}
    named = dict(task.named_parameters())
    depth = 4
    pos = next(n for n in named if n.endswith("pos_embed"))
    block0 = next(n for n in named if ".blocks.0." in n)
    head = next(n for n in named if n.startswith("detector.roi_heads."))
    fpn = next(n for n in named if n.startswith("detector.backbone.fpn."))
    assert by_param[id(named[pos])] == pytest.approx(0.9 ** (depth + 1))
    assert by_param[id(named[block0])] == pytest.approx(0.9 ** depth)
    assert by_param[id(named[head])] == by_param[id(named[fpn])] == pytest.approx(1.0)
    # the detection copy: no rel-pos in the global blocks (1 and 3 at interval 2), the window blocks keep theirs
    assert not any(".blocks.3.attn.rel_pos" in n for n in named) and any(".blocks.0.attn.rel_pos" in n for n in named)


def test_collate_keeps_one_entry_per_image():
    a = {"image": torch.zeros(3, 8, 8), "boxes": torch.zeros(2, 4), "labels": torch.tensor([0, 1])}
    b = {"image": torch.zeros(3, 8, 8), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    batch = collate_detection([a, b])
    assert DetectionTask.batch_size_of(batch) == 2 and [len(x) for x in batch["boxes"]] == [2, 0]
    t = DetectionTask.targets(batch)
    assert t[1]["boxes"].shape == (0, 4) and torch.equal(t[0]["labels"], a["labels"])


def test_packed_batches_unpack_to_the_same_lists():
    """A worker packs a list batch into few tensors (per-object keys concatenated, equal shapes stacked,
    tensors already in shared memory and non-tensors left as lists); after the transfer the datamodule's
    hook gives back the lists: the same values, shapes and dtypes. Unpacked batches pass through."""
    from rsbench.data.datamodule import RSDataModule
    from rsbench.data.packing import PACKED, pack_lists, unpack_lists

    g = torch.Generator().manual_seed(0)
    shared = [torch.rand(3, 6, 6, generator=g).share_memory_() for _ in range(3)]
    batch = {"image": shared, "boxes": [torch.rand(n, 4, generator=g) for n in (2, 0, 5)],
             "labels": [torch.arange(n) for n in (2, 0, 5)], "size": [torch.tensor([6, 6])] * 3,
             "name": ["a", "b", "c"], "mixed": [torch.zeros(2), torch.zeros(2, dtype=torch.long), torch.zeros(2)]}
    packed = pack_lists(batch)
    assert packed[PACKED] == {"boxes": [2, 0, 5], "labels": [2, 0, 5], "size": None}
    assert packed["boxes"].shape == (7, 4) and packed["size"].shape == (3, 2) and packed["image"] is shared
    dm = RSDataModule(dataset="dior", root="unused", splits={}, batch_size=1)
    for out in (unpack_lists(packed), dm.on_after_batch_transfer(packed, 0)):
        assert PACKED not in out and out.keys() == batch.keys()
        for k, values in batch.items():
            assert len(out[k]) == len(values)
            for x, y in zip(out[k], values):
                assert (x == y) if isinstance(y, str) else (x.dtype == y.dtype and torch.equal(x, y))
    assert unpack_lists(batch) is batch and pack_lists({"image": []}) == {"image": []}


def test_detection_loader_with_workers_gives_the_unpacked_batches(samples, tmp_path):
    """Through DataLoader workers (packed) and in the main process (not packed), the datamodule's batches
    after ``on_after_batch_transfer`` are the same lists of the same tensors."""
    from torch.utils.data import DataLoader

    from rsbench.data.datamodule import RSDataModule
    from rsbench.data.det_transforms import build_det_transforms

    dm = RSDataModule(dataset="dior", root=samples("dior"), splits={"test": "test"}, batch_size=2,
                      transforms=build_det_transforms, img_size=64, num_workers=0, cache_dir=tmp_path,
                      full_check_max_samples=0)
    dm.check()
    ds = dm.datasets["test"]
    from rsbench.data.packing import PACKED

    batches = []
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate_detection)
        raw = list(loader)
        assert all((PACKED in b) == (workers > 0) for b in raw)  # packed exactly when it crossed from a worker
        batches.append([dm.on_after_batch_transfer(b, 0) for b in raw])
    assert len(batches[0]) == len(batches[1]) > 0
    for a, b in zip(*batches):
        assert a.keys() == b.keys()
        for k in a:
            for x, y in zip(a[k], b[k]):
                assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
