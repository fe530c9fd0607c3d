"""Batching without resizing or normalising: MMDetection's ``DetDataPreprocessor(pad_size_divisor=32)``.

MTP feeds DIOR at 800 px and xView at 416 px as they are (their ``Resize`` is a no-op on those
sizes); torchvision's transform would resize to min 800 / max 1333 (a 416 tile becomes 800). Images
arrive normalised (the rsbench data pipeline does it), and mmdet pads *after* normalising, with 0.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class PadOnlyTransform(GeneralizedRCNNTransform):
    """Stack the images into one zero-padded batch whose H and W are multiples of ``size_divisible``.

    ``image_sizes`` keep each image's own size (used to clip boxes); predictions are returned in
    input pixels, as nothing was rescaled. Any number of channels.
    """

    def __init__(self, size_divisible: int = 32) -> None:
        super().__init__(min_size=1, max_size=1, image_mean=[0.0], image_std=[1.0], size_divisible=size_divisible)

    def normalize(self, image: Tensor) -> Tensor:
        if not image.is_floating_point():
            raise TypeError(f"detector images must be normalised float tensors, got {image.dtype}")
        return image

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        return image, target

    def postprocess(self, result, image_shapes, original_image_sizes):
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size_divisible={self.size_divisible})"
