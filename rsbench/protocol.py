"""What a run's number means: its protocol, the paper's protocol, its precision and its split's provenance.

A protocol is which split trained, which split was scored and who scored it (``local``: rsbench's
own metrics; ``server``: an online evaluation server, entered afterwards with
``python -m rsbench.scores add``). Every dataset config states the paper's protocol
(``paper_protocol``: ``train``, ``test``, ``scored_by``); the leaderboard gives the paper's number
and the difference only to rows whose protocol equals it. Nothing here names a dataset: the facts
are keys of ``conf/dataset/*.yaml`` (``paper_protocol``, ``split_parts``, ``split_source``,
``split_source_files``), copied into the run record by :func:`rsbench.app.identity`.

Beside the splits, a run's training regime (:func:`regime`): ``finetune`` (``full`` | ``frozen``
encoder, ``conf/finetune/``) and ``labels`` (the fraction of the train split, ``data.label_fraction``).
The paper's numbers are full finetuning on every label; only such runs are compared (:func:`paper_regime`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

LOCAL, SERVER = "local", "server"
#: the keys that make two protocols the same
PROTOCOL_KEYS = ("train", "test", "scored_by")
#: Lightning's short precision names → the full ones ``trainer.precision`` reports
_PRECISION = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}


def _get(node: Any, key: str, default: Any = None) -> Any:
    if node is None:
        return default
    value = node.get(key, default) if hasattr(node, "get") else getattr(node, key, default)
    return default if value is None else value


def run_protocol(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """The run's local protocol from ``dataset.splits``; ``held_out`` is False when the scored split
    was trained on (it is the train split or one of its ``split_parts``), ``predict`` the split
    written as a server submission (or None)."""
    splits = _get(dataset, "splits", {})
    train, test = _get(splits, "train"), _get(splits, "test")
    parts = _get(_get(dataset, "split_parts", {}), str(train)) or [train]
    return {"train": train, "test": test, "scored_by": LOCAL, "predict": _get(splits, "predict"),
            "held_out": test not in list(parts) and test != train}


def paper_protocol(dataset: Mapping[str, Any]) -> dict[str, Any] | None:
    """``dataset.paper_protocol`` as the record keeps it (None when the config has none)."""
    p = _get(dataset, "paper_protocol")
    if p is None:
        return None
    out = {k: _get(p, k) for k in PROTOCOL_KEYS}
    if _get(p, "server"):
        out["server"] = str(_get(p, "server"))
    return out


def server_protocol(protocol: Mapping[str, Any]) -> dict[str, Any] | None:
    """The protocol of a server score for a run: trained as it was, its ``predict`` split scored by the server."""
    if not protocol or not protocol.get("predict"):
        return None
    return {"train": protocol.get("train"), "test": protocol["predict"], "scored_by": SERVER}


def same(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return bool(a) and bool(b) and all(a.get(k) == b.get(k) for k in PROTOCOL_KEYS)


def label(p: Mapping[str, Any] | None) -> str:
    """``train: trainval, scored: test (server)``; ``unknown`` for a record that predates protocols."""
    if not p:
        return "unknown"
    return f"train: {p.get('train')}, scored: {p.get('test')} ({p.get('scored_by')})"


def server_score_refusal(rec: Mapping[str, Any]) -> str | None:
    """Why a server score cannot be entered for this record (None when it can)."""
    who = f"{rec.get('task')}/{rec.get('dataset')}/{rec.get('backbone')} tag={rec.get('tag')} seed={rec.get('seed')}"
    if rec.get("status") != "ok":
        return f"run {who} has status {rec.get('status')!r}: only a finished run (status ok) takes a server score"
    paper, proto = rec.get("paper_protocol"), rec.get("protocol")
    if not proto or not paper:
        return f"the record of {who} has no protocol (it predates rsbench's protocols): rerun it"
    if paper.get("scored_by") != SERVER:
        return (f"{rec.get('dataset')} is scored locally in the paper ({label(paper)}); "
                f"no server score is compared for it")
    served = server_protocol(proto)
    if not same(served, paper):
        return (f"run {who} is not on the paper's protocol: it trained on {proto.get('train')!r} and wrote a "
                f"submission for {proto.get('predict')!r}, the paper trains on {paper.get('train')!r} and the "
                f"server scores {paper.get('test')!r} ({label(paper)}). Run it with protocol=paper "
                f"(and its own tag=..., e.g. tag=paper), submit <run>/submission/, then enter that score")
    return None


#: the paper's training regime: every parameter finetuned, on every label of the train split
FULL, ALL_LABELS = "full", "100%"


def labels_label(fraction: Any, seed: Any = 0) -> str:
    """The leaderboard's ``labels`` cell: ``100%`` for the whole train split, else ``10% (seed 0)``
    (``data.label_fraction``, ``data.fraction_seed``); ``100%`` for a record that predates label fractions."""
    try:
        f = 1.0 if fraction is None else float(fraction)
    except (TypeError, ValueError):
        return str(fraction)
    return ALL_LABELS if f == 1.0 else f"{f * 100:g}% (seed {seed if seed is not None else 0})"


def regime(rec: Mapping[str, Any]) -> tuple[str, str]:
    """(``finetune``, ``labels``) of a record: how much of the model trained and on how many labels."""
    return str(rec.get("finetune") or FULL), labels_label(rec.get("label_fraction"), rec.get("fraction_seed"))


def paper_regime(rec: Mapping[str, Any]) -> bool:
    """Whether a record trained as the paper did (full finetuning on every label): only then is it compared."""
    return regime(rec) == (FULL, ALL_LABELS)


def precision_label(value: Any) -> str:
    """``trainer.precision`` as Lightning reports it (``32-true``, ``bf16-mixed``, ...)."""
    if value is None:
        return "32-true"
    s = str(value)
    return _PRECISION.get(s, s)


def split_source(dataset: Mapping[str, Any], sample: bool) -> str:
    """Where the run's split comes from: ``generated sample``, the lists of ``kwargs.split_dir``, the
    label of the first ``split_source_files`` entry that exists in the root, else ``split_source``."""
    if sample:
        return "generated sample"
    split_dir = _get(_get(dataset, "kwargs", {}), "split_dir")
    if split_dir:
        return f"lists in {split_dir}"
    root = _get(dataset, "root")
    for rel, source in dict(_get(dataset, "split_source_files", {})).items():
        if root and (Path(str(root)) / str(rel)).exists():
            return str(source)
    return str(_get(dataset, "split_source", "unknown"))
