"""List batches packed into few tensors for the trip from a DataLoader worker, unpacked after the transfer.

Detection batches are lists (one image, box set and label set per image). A worker sends every tensor
of a batch through its own shared-memory segment and file descriptor, which costs the main process
~0.15-0.2 ms a tensor however small (``torch.multiprocessing``'s ``file_descriptor`` strategy): a batch
of 4 DIOR samples is 12 tensors. Packed, each per-object key (boxes, labels, ...) is one concatenated
tensor with the per-image counts, and tensors of one shape one stacked tensor (written straight into
shared memory by ``default_collate``) unless they already are in shared memory (the detection
transforms allocate their images there: a stacked copy would cost more than it saves). One transfer
to the device per key instead of one per image, too.

:func:`pack_lists` runs in the worker (the task's collate), :func:`unpack_lists` in the datamodule's
``on_after_batch_transfer``, on the device: the lists come back as views of the packed tensors, the same
values and shapes as before packing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import default_collate

__all__ = ["PACKED", "pack_lists", "unpack_lists"]

#: the batch key that lists the packed keys: ``{key: None}`` (stacked) or ``{key: [counts]}`` (concatenated)
PACKED = "_packed"


def pack_lists(batch: Mapping[str, list[Any]]) -> dict[str, Any]:
    """A dict of per-image lists with its tensor lists packed: tensors of one shape and dtype stacked
    (``default_collate``: into shared memory in a worker), tensors of one dtype and trailing shape (any
    first dimension) concatenated; other lists kept. The packing is recorded under :data:`PACKED`."""
    out: dict[str, Any] = {}
    spec: dict[str, list[int] | None] = {}
    for key, values in batch.items():
        out[key] = values
        if not values or not all(isinstance(v, torch.Tensor) and v.ndim >= 1 for v in values):
            continue
        first = values[0]
        if any(v.dtype != first.dtype for v in values) or all(v.is_shared() for v in values):
            continue  # already in shared memory (the images of the detection transforms): a copy would cost more
        if all(v.shape == first.shape for v in values):
            out[key], spec[key] = default_collate(list(values)), None
        elif all(v.shape[1:] == first.shape[1:] for v in values):
            out[key], spec[key] = torch.cat(list(values)), [int(v.shape[0]) for v in values]
    if spec:
        out[PACKED] = spec
    return out


def unpack_lists(batch: Any) -> Any:
    """The per-image lists of a batch :func:`pack_lists` packed (views of the packed tensors, on their
    device); any other batch as it is."""
    if not isinstance(batch, Mapping) or PACKED not in batch:
        return batch
    out = {k: v for k, v in batch.items() if k != PACKED}
    for key, counts in batch[PACKED].items():
        packed = out[key]
        out[key] = list(packed.unbind(0)) if counts is None else list(packed.split(list(counts)))
    return out

