"""The conv → BatchNorm → ReLU block both dense heads are made of (UperNet, the change-detection UNet).

:class:`ConvBNReLU` is mmcv's ``ConvModule`` with ``norm_cfg=BN``: a conv without bias, BatchNorm,
ReLU, under mmcv's names (``conv``, ``bn``, ``activate``, so a finetuned mmseg head's
``decode_head.*.conv.weight`` / ``.bn.*`` keys match), indexable as a sequence (``block[0]`` is the
conv).

Why not ``timm.layers.ConvNormAct``: it names the same parts ``conv`` / ``bn`` but puts the ReLU
inside the norm (``BatchNormAct2d``, a ``BatchNorm2d`` subclass). Lightning's
``Trainer(sync_batchnorm=True)`` — which every MTP segmentation and change-detection recipe sets, as
the paper trains with SyncBN — converts with ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``,
which replaces that norm by a plain ``SyncBatchNorm`` and so silently drops the ReLU of every
block on more than one GPU (tests/test_necks.py::test_conv_block_keeps_relu_under_sync_bn shows
it). A separate ``activate`` module survives the conversion.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn


class ConvBNReLU(nn.Sequential):
    """conv k×k (no bias, ``padding`` default k // 2) → BN → ReLU.

    ``mmcv_init``: mmcv's ``ConvModule.init_weights`` — conv Kaiming-normal (fan_out, relu), BN
    weight 1 / bias 0 (UperNet); otherwise PyTorch's default initialisation (the UNet head).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int | None = None,
                 *, mmcv_init: bool = False) -> None:
        pad = kernel_size // 2 if padding is None else padding
        super().__init__(OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad, bias=False),
            bn=nn.BatchNorm2d(out_channels),
            activate=nn.ReLU(inplace=True),
        ))
        if mmcv_init:
            nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.ones_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)
