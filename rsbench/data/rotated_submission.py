"""Server submissions of rotated detection: patch detections merged back per original image, then
written in the server's format, as MTP produced them.

**DOTA task 1** (:func:`write_dota_task1`, MMRotate 1.x ``DOTAMetric.merge_results`` with
``format_only=True, merge_patches=True``): one ``Task1_<class>.txt`` per class of the dataset's list,
empty ones included; each line ``<image id> <score> x1 y1 … x4 y4``, the score as Python's
``str(round(score, 2))`` (``0.9``, not ``0.90``), the corners ``%.2f`` (MMRotate's ``rbox2qbox`` order,
computed in float64 from the merged float32 boxes, as there); zipped into ``<dir>/<dir name>.zip``.
Lines follow the images in the dataset's order and, within an image, NMS's decreasing score.

**FAIR1M-2.0** (:func:`write_fair1m_xml`, MTP's ``scripts/dota_submit_txt_to_fair1m_xml.py``, which
reads the Task-1 files above): one ``test/<id>.xml`` per test image, objects or not, pretty-printed
UTF-8; ``source/filename`` ``<id>.tif`` and ``origin`` GF2/GF3, ``research`` (version 2.0), the image's
``size``; each object ``coordinate`` pixel, ``type`` rectangle, ``description`` None,
``possibleresult/name`` + ``probability`` (the Task-1 score string), five ``point`` texts ``x,y`` at
6 decimals of the Task-1 2-decimal corners (the fifth closes the ring). **One deliberate difference**:
class names are the release's (:data:`rsbench.data.datasets.fair1m.OFFICIAL_NAMES`: ``Small Car`` but
``other-airplane``), where MTP's converter turned every ``-`` into a space (``other airplane``), which
the official class list does not contain. Zipped into ``<dir>/<dir name>.zip`` holding ``test/*.xml``
(the folder MTP's script writes; the server's exact expectation of the zip's layout is UNCONFIRMED).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any
from xml.dom import minidom
from xml.etree import ElementTree as ET

import torch

from rsbench.models.ops.rbox import rbox_to_poly

#: ``{image id: {"boxes": (N, 5) float32, "scores": (N,), "labels": (N,)}}`` in the original image's pixels
Merged = Mapping[str, Mapping[str, torch.Tensor]]


def task1_lines(merged: Merged, num_classes: int, order: Sequence[str] | None = None) -> list[list[str]]:
    """The lines of each class's Task-1 file (list index = class id); ``order``: the image ids' order."""
    out: list[list[str]] = [[] for _ in range(num_classes)]
    for img_id in order if order is not None else list(merged):
        d = merged.get(img_id)
        if d is None:
            continue
        polys = rbox_to_poly(torch.as_tensor(d["boxes"]).double().reshape(-1, 5))
        for poly, score, label in zip(polys.tolist(), torch.as_tensor(d["scores"]).tolist(),
                                      torch.as_tensor(d["labels"]).tolist()):
            if not 0 <= int(label) < num_classes:
                raise ValueError(f"{img_id}: label {label} outside the {num_classes} classes")
            out[int(label)].append(" ".join([img_id, str(round(float(score), 2)), *(f"{p:.2f}" for p in poly)]))
    return out


def write_dota_task1(merged: Merged, class_names: Sequence[str], out_dir: Path,
                     order: Sequence[str] | None = None) -> dict[str, Any]:
    """``out_dir/Task1_<class>.txt`` for every class and ``out_dir/<out_dir name>.zip`` (module docstring)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, lines in zip(class_names, task1_lines(merged, len(class_names), order)):
        files.append(_write_text(out_dir / f"Task1_{name}.txt", "".join(f"{ln}\n" for ln in lines)))
    zip_path = _zip(out_dir / f"{out_dir.name}.zip", [(f, f.name) for f in files])
    return {"format": "DOTA task 1", "zip": str(zip_path), "num_images": len(merged),
            "num_detections": int(sum(len(d["scores"]) for d in merged.values()))}


def fair1m_submission_xml(image_id: str, size: Mapping[str, Any], objects: Sequence[tuple[str, str, list[float]]],
                          *, provider: str = "rsbench", author: str = "rsbench", time: str | None = None) -> bytes:
    """One image's submission XML; ``objects``: (class name, probability text, 8 corner coordinates)."""
    ann = ET.Element("annotation")
    source = ET.SubElement(ann, "source")
    ET.SubElement(source, "filename").text = str(size.get("file") or f"{image_id}.tif")
    ET.SubElement(source, "origin").text = "GF2/GF3"
    research = ET.SubElement(ann, "research")
    for tag, text in (("version", "2.0"), ("provider", provider), ("author", author), ("pluginname", "FAIR1M"),
                      ("pluginclass", "object detection"), ("time", time or date.today().strftime("%Y-%m"))):
        ET.SubElement(research, tag).text = text
    sz = ET.SubElement(ann, "size")
    for tag in ("width", "height", "depth"):
        ET.SubElement(sz, tag).text = str(int(size.get(tag, 3)))
    objs = ET.SubElement(ann, "objects")
    for name, prob, corners in objects:
        obj = ET.SubElement(objs, "object")
        ET.SubElement(obj, "coordinate").text = "pixel"
        ET.SubElement(obj, "type").text = "rectangle"
        ET.SubElement(obj, "description").text = "None"
        res = ET.SubElement(obj, "possibleresult")
        ET.SubElement(res, "name").text = name
        ET.SubElement(res, "probability").text = prob
        points = ET.SubElement(obj, "points")
        xy = [(corners[2 * k], corners[2 * k + 1]) for k in range(4)]
        for x, y in [*xy, xy[0]]:
            ET.SubElement(points, "point").text = f"{x:.6f},{y:.6f}"
    raw = ET.tostring(ann, encoding="utf-8", xml_declaration=True)
    return minidom.parseString(raw).toprettyxml(encoding="utf-8")


def write_fair1m_xml(merged: Merged, class_names: Sequence[str], sizes: Mapping[str, Mapping[str, Any]],
                     out_dir: Path, *, order: Sequence[str] | None = None, **kw: Any) -> dict[str, Any]:
    """``out_dir/test/<id>.xml`` for every image of ``order`` (else of ``sizes``) and the zip (module docstring).

    ``class_names``: the names written (the release's spelling); ``sizes``: ``{id: {"file", "width",
    "height", "depth"}}``."""
    out_dir = Path(out_dir)
    xml_dir = out_dir / "test"
    xml_dir.mkdir(parents=True, exist_ok=True)
    ids = list(order) if order is not None else sorted(sizes)
    per_image: dict[str, list[tuple[str, str, list[float]]]] = {i: [] for i in ids}
    for label, lines in enumerate(task1_lines(merged, len(class_names), ids)):
        for line in lines:  # through the Task-1 text, as MTP's converter reads it
            img_id, prob, *coords = line.split(" ")
            per_image[img_id].append((class_names[label], prob, [float(c) for c in coords]))
    files = []
    for img_id in ids:
        size = sizes.get(img_id)
        if size is None:
            raise KeyError(f"no size for the image {img_id!r}")
        files.append(_write_bytes(xml_dir / f"{img_id}.xml", fair1m_submission_xml(img_id, size, per_image[img_id],
                                                                                    **kw)))
    zip_path = _zip(out_dir / f"{out_dir.name}.zip", [(f, f"test/{f.name}") for f in files])
    return {"format": "FAIR1M-2.0 XML", "zip": str(zip_path), "num_images": len(files),
            "num_detections": int(sum(len(v) for v in per_image.values()))}


def _write_text(path: Path, text: str) -> Path:
    return _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _zip(path: Path, members: Sequence[tuple[Path, str]]) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f, arcname in members:
            z.write(f, arcname)
    os.replace(tmp, path)
    return path
