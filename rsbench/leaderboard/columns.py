"""The leaderboard's columns and row keys: what makes a row, a model, a benchmark; the per-task extras."""

from __future__ import annotations

import numbers

from rsbench.config import package_path

#: The numbers the paper reports (task, dataset, metric, backbone, pretrain, value, source).
PAPER_CSV = package_path("paper_results.csv")


WHO = ["task", "dataset", "backbone", "pretrain", "tag"]


#: what makes a row: runs differing in any of these are never averaged together (``finetune``: full | frozen
#: encoder; ``labels``: the train split's fraction, ``100%`` or ``10% (seed 0)``; rsbench.protocol.regime)
REGIME = ["finetune", "labels"]


KEYS = WHO + ["protocol", "precision", "split"] + REGIME


COLS = KEYS + ["metric", "mean", "std", "n_runs", "seeds", "paper", "paper_source", "diff", "paper_protocol",
               "scored_by_source", "train_time_h", "images_per_s", "epochs",
               "iqm", "ci95_low", "ci95_high", "values", "normalized", "also"]


#: one model in the normalised score: runs differing in any of these are different models
MODEL = ["backbone", "pretrain", "tag", "precision"] + REGIME


#: one benchmark of the normalised score: its values are rescaled together (a frozen-encoder or label-fraction
#: benchmark is its own, as GEO-Bench's partitions)
BENCH = ["task", "dataset", "metric", "protocol", "split"] + REGIME


BACKBONE_COLS = MODEL + ["score", "ci95_low", "ci95_high", "n_datasets", "n_runs", "datasets", "left_out"]


#: metrics shown beside the headline one (means over seeds, column ``also``): COCO mAP@[.5:.95] and AP75 for
#: horizontal detection, the other segmentation / change-detection summaries
ALSO = {"det": ("mAP", "AP75"), "seg": ("mF1", "OA"), "cd": ("IoU", "Precision", "Recall")}


#: the per-class metric of each task's per-class table (``leaderboard_per_class.csv``, markdown section)
PER_CLASS = {"cls": "accuracy", "seg": "IoU", "cd": "F1", "det": "AP50", "rotdet": "AP"}


PER_CLASS_COLS = KEYS + ["metric", "class", "mean", "n_runs"]


ASIDE = WHO + ["seed", "protocol", "metric", "value", "why", "run_dir", "sample_data"]


UNREADABLE = ["path", "reason"]


#: record fields and what they must be (None is always allowed)
_SCALAR = (str, numbers.Number, bool)


_FIELDS = {**{k: _SCALAR for k in WHO}, "seed": _SCALAR, "status": str, "metric": str, "precision": str,
           "split_source": str, "run_dir": str, "error": str, "protocol": dict, "paper_protocol": dict,
           "metrics": dict, "server_scores": dict}


_NUMBERS = ("train_time_s", "train_images_per_s", "epochs")


#: the per-dataset figures' file names: leaderboard_<task>_<dataset>.png (sample data: leaderboard_sample_...)
DATASET_PNG = "leaderboard_{prefix}{task}_{dataset}.png"
