"""The leaderboard on a fixture of run records: means, std, paper difference, failed runs; and what a
row must carry to be compared with the paper (protocol, precision, split provenance, server scores)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from rsbench.leaderboard import write_leaderboard
from rsbench.results import atomic_write_json
from rsbench.scores import main as scores_main

LOCAL_TEST = {"train": "train", "test": "test", "scored_by": "local"}
EUROSAT = {"train": "train", "test": "val", "scored_by": "local"}  # the paper: eurosat/train → eurosat/val
LOVEDA_PAPER = {"train": "trainval", "test": "test", "scored_by": "server", "server": "LoveDA Codabench 13030"}
PAPER_CSV = ("task,dataset,metric,backbone,pretrain,value,source\n"
             "cls,eurosat,OA,vitb_rvsa,MAE+MTP,98.76,paper\n"
             "cls,eurosat,OA,vitl_rvsa,MAE+MTP,98.78,paper\n"
             "cd,levir,F1,vitl_rvsa,MAE+MTP,92.67,paper\n"
             "seg,loveda,mIoU,vitb_rvsa,MAE+MTP,52.39,paper\n")


def _rec(runs, task, dataset, backbone, seed, value=None, status="ok", pretrain="MAE+MTP", tag="default",
         metric="OA", sample=False, time_s=3600.0, protocol=None, paper=None, precision="32-true",
         split="official", submission=None):
    paper = paper or (EUROSAT if dataset == "eurosat" else LOCAL_TEST)
    protocol = protocol or {**{k: paper[k] for k in ("train", "test")}, "scored_by": "local", "predict": None,
                            "held_out": True}
    d = runs / task / dataset / backbone / f"{tag}-s{seed}"
    rec = {"status": status, "task": task, "dataset": dataset, "backbone": backbone, "pretrain": pretrain,
           "tag": tag, "seed": seed, "metric": metric, "sample_data": sample, "run_dir": str(d),
           "protocol": protocol, "paper_protocol": paper, "precision": precision, "split_source": split}
    if status == "ok":
        rec.update(metrics={metric: value}, train_time_s=time_s, train_images_per_s=100.0, epochs=100)
        if submission:
            rec["metrics"]["submission"] = {"split": submission, "dir": str(d / "submission"), "num_files": 4}
    elif status == "failed":
        rec.update(error="RuntimeError: CUDA out of memory")
    atomic_write_json(d / "metrics.json", rec)
    return d


def _board(tmp_path, runs):
    paper = tmp_path / "paper.csv"
    paper.write_text(PAPER_CSV)
    out = write_leaderboard(tmp_path, runs, paper)
    return pd.read_csv(out["csv"]), out["md"].read_text()


def _line(md: str, *cells: str) -> str:
    hits = [line for line in md.splitlines() if all(f"| {c} |" in line for c in cells)]
    assert len(hits) == 1, (cells, hits)
    return hits[0]


@pytest.fixture
def board(tmp_path):
    runs = tmp_path / "runs"
    for seed, v in enumerate([98.0, 99.0, 97.0]):
        _rec(runs, "cls", "eurosat", "vitb_rvsa", seed, v, split="rsbench seeded")
    _rec(runs, "cls", "eurosat", "vitb_rvsa", 0, 50.0, tag="lr1e-3", split="rsbench seeded")
    _rec(runs, "cd", "levir", "vitl_rvsa", 0, 92.0, metric="F1", time_s=7200)
    _rec(runs, "cls", "eurosat", "resnet18", 0, 100.0, pretrain="none", tag="demo", sample=True, split="generated sample")
    _rec(runs, "cls", "resisc45", "vitb_rvsa", 3, status="failed")
    _rec(runs, "cls", "resisc45", "vitb_rvsa", 4, status="running")
    paper = tmp_path / "paper.csv"
    paper.write_text(PAPER_CSV)
    out = write_leaderboard(tmp_path, runs, paper)
    assert out["png"].stat().st_size > 0 and "![rsbench − paper](leaderboard.png)" in out["md"].read_text()
    return pd.read_csv(out["csv"]), out["md"].read_text()


def test_mean_std_and_paper_difference(board):
    df, _ = board
    row = df[(df.dataset == "eurosat") & (df.backbone == "vitb_rvsa") & (df.tag == "default")].iloc[0]
    assert row["n_runs"] == 3 and row["seeds"] == "0,1,2"
    assert row["mean"] == pytest.approx(98.0)
    assert row["std"] == pytest.approx(1.0)  # sample std of 97, 98, 99
    assert row["paper"] == pytest.approx(98.76)
    assert row["diff"] == pytest.approx(98.0 - 98.76)
    assert row["train_time_h"] == pytest.approx(1.0)


def test_tags_kept_apart_and_single_run_has_no_std(board):
    df, _ = board
    lr = df[df.tag == "lr1e-3"].iloc[0]
    assert lr["mean"] == 50.0 and lr["n_runs"] == 1 and math.isnan(lr["std"])
    levir = df[df.dataset == "levir"].iloc[0]
    assert levir["metric"] == "F1" and levir["diff"] == pytest.approx(92.0 - 92.67)


def test_sample_data_runs_are_separate(board):
    df, md = board
    assert set(df[df.backbone == "resnet18"]["data"]) == {"sample"}
    main, sample = md.split("## Runs on generated sample data")
    assert "resnet18" not in main and "resnet18" in sample.split("## Failed")[0]


def test_failed_and_unfinished_runs_listed_apart(board):
    df, md = board
    assert "resisc45" not in set(df["dataset"])
    failed = md.split("## Failed or unfinished runs")[1]
    assert "| cls | resisc45 | vitb_rvsa | default | 3 | failed | RuntimeError: CUDA out of memory |" in failed
    assert "| 4 | running |" in failed


def test_markdown_row_shows_protocol_precision_split_paper_and_delta(board):
    _, md = board
    assert ("| cls | eurosat | vitb_rvsa | MAE+MTP | default | OA | 98.00 ± 1.00 | train: train, scored: val (local) "
            "| 32-true | rsbench seeded | 98.76 | -0.76 | 3 (0,1,2) |") in md
    assert "| cd | levir | vitl_rvsa | MAE+MTP | default | F1 | 92.00 | train: train, scored: test (local) | 32-true | official |" in md
    assert "a Δ there is no reproduction test" in md  # the note under the table for non-official splits


def test_paper_value_is_looked_up_per_backbone(tmp_path):
    """Two backbones whose paper values differ: each row gets its own (a lookup without the backbone
    gives both rows the first one, 98.76)."""
    runs = tmp_path / "runs"
    _rec(runs, "cls", "eurosat", "vitb_rvsa", 0, 98.0)
    _rec(runs, "cls", "eurosat", "vitl_rvsa", 0, 98.5)
    df, _ = _board(tmp_path, runs)
    by = df.set_index("backbone")
    assert by.loc["vitb_rvsa", "paper"] == pytest.approx(98.76) and by.loc["vitl_rvsa", "paper"] == pytest.approx(98.78)
    assert by.loc["vitl_rvsa", "diff"] == pytest.approx(98.5 - 98.78)


def test_paper_value_needs_the_pretraining_label(tmp_path):
    runs = tmp_path / "runs"
    _rec(runs, "cls", "eurosat", "vitb_rvsa", 0, 98.0, pretrain="MAE")  # not the paper's MAE+MTP weights
    df, _ = _board(tmp_path, runs)
    assert math.isnan(df.iloc[0]["paper"]) and math.isnan(df.iloc[0]["diff"])


def test_precision_is_part_of_the_row(tmp_path):
    runs = tmp_path / "runs"
    _rec(runs, "cls", "eurosat", "vitb_rvsa", 0, 98.0)
    _rec(runs, "cls", "eurosat", "vitb_rvsa", 1, 90.0, precision="bf16-mixed")
    df, md = _board(tmp_path, runs)
    assert sorted(zip(df["precision"], df["mean"], df["n_runs"])) == [("32-true", 98.0, 1), ("bf16-mixed", 90.0, 1)]
    assert "| 32-true |" in _line(md, "98.00") and "| bf16-mixed |" in _line(md, "90.00")


def test_loveda_val_row_carries_no_paper_delta(tmp_path):
    """The default LoveDA run (Train → Val, local) beside the paper's test-server number: not compared."""
    runs = tmp_path / "runs"
    _rec(runs, "seg", "loveda", "vitb_rvsa", 0, 50.0, metric="mIoU", paper=LOVEDA_PAPER,
         protocol={"train": "train", "test": "val", "scored_by": "local", "predict": None, "held_out": True})
    df, md = _board(tmp_path, runs)
    row = df.iloc[0]
    assert row["protocol"] == "train: train, scored: val (local)" and row["mean"] == 50.0
    assert math.isnan(row["paper"]) and math.isnan(row["diff"])
    line = _line(md, "loveda", "50.00")
    assert "| train: train, scored: val (local) | 32-true | official | – | – |" in line
    assert "loveda: train: trainval, scored: test (server)" in md  # why there is no paper value


def test_record_without_a_protocol_is_never_compared(tmp_path):
    d = _rec(tmp_path / "runs", "cls", "eurosat", "vitb_rvsa", 0, 98.0)
    rec = json.loads((d / "metrics.json").read_text())
    for k in ("protocol", "paper_protocol", "precision", "split_source"):
        rec.pop(k)
    atomic_write_json(d / "metrics.json", rec)
    df, _ = _board(tmp_path, tmp_path / "runs")
    row = df.iloc[0]
    assert (row["protocol"], row["precision"], row["split"]) == ("unknown", "unknown", "unknown")
    assert math.isnan(row["paper"])


def _paper_run(runs, value=45.0, seed=0):
    """A LoveDA run with protocol=paper: trained on trainval, Test submission written, tested on Val (seen)."""
    return _rec(runs, "seg", "loveda", "vitb_rvsa", seed, value, metric="mIoU", tag="paper", paper=LOVEDA_PAPER,
                submission="test",
                protocol={"train": "trainval", "test": "val", "scored_by": "local", "predict": "test", "held_out": False})


def test_loveda_server_score_gives_the_paper_delta(tmp_path, capsys):
    runs = tmp_path / "runs"
    run = _paper_run(runs)
    df, md = _board(tmp_path, runs)
    assert not len(df)  # Val was trained on: no row, and the submission waits for its score
    aside = md.split("## Finished runs without a row")[1]
    assert "| seg | loveda | vitb_rvsa | paper | 0 | train: trainval, scored: val (local) | 45.00 |" in aside
    assert f"python -m rsbench.scores add {run} --metric mIoU" in aside and "LoveDA Codabench 13030" in aside

    scores_main(["--results-dir", str(tmp_path), "add", "loveda/vitb_rvsa/paper-s0", "--value", "52.4",
                 "--source", "LoveDA Codabench 13030", "--date", "2025-02-03"])
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["metrics"]["mIoU"] == 45.0  # the local number stays where it was
    s = rec["server_scores"]["mIoU"]
    assert (s["value"], s["split"], s["train"], s["source"], s["date"]) == (52.4, "test", "trainval",
                                                                            "LoveDA Codabench 13030", "2025-02-03")
    df, md = pd.read_csv(tmp_path / "leaderboard.csv"), (tmp_path / "leaderboard.md").read_text()
    row = df.iloc[0]
    assert len(df) == 1 and row["protocol"] == "train: trainval, scored: test (server)"
    assert row["mean"] == 52.4 and row["paper"] == pytest.approx(52.39) and row["diff"] == pytest.approx(0.01)
    assert "| 52.40 | train: trainval, scored: test (server) | 32-true | official | 52.39 | +0.01 | 1 (0) |" in md
    assert "LoveDA Codabench 13030 (2025-02-03)" in md and "## Finished runs without a row" not in md


def test_server_score_for_a_run_off_the_paper_protocol_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs"
    run = _rec(runs, "seg", "loveda", "vitb_rvsa", 0, 50.0, metric="mIoU", paper=LOVEDA_PAPER, submission="test",
               protocol={"train": "train", "test": "val", "scored_by": "local", "predict": "test", "held_out": True})
    before = (run / "metrics.json").read_text()
    with pytest.raises(SystemExit) as e:
        scores_main(["--results-dir", str(tmp_path), "add", str(run), "--value", "50.1", "--source", "Codabench"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "not on the paper's protocol" in err and "protocol=paper" in err
    assert (run / "metrics.json").read_text() == before
    eurosat = _rec(runs, "cls", "eurosat", "vitb_rvsa", 0, 98.0)
    with pytest.raises(SystemExit):
        scores_main(["--results-dir", str(tmp_path), "add", str(eurosat), "--value", "98", "--source", "x"])
    assert "scored locally in the paper" in capsys.readouterr().err


def test_server_score_checks_value_run_id_and_replacement(tmp_path, capsys):
    runs = tmp_path / "runs"
    _paper_run(runs, seed=0)
    _paper_run(runs, seed=1)
    base = ["--results-dir", str(tmp_path), "add"]
    for args, msg in ((["paper-s", "--value", "52"], "no run"), (["vitb_rvsa", "--value", "52"], "no run"),
                      (["paper-s0", "--value", "152"], "0..100"), (["paper-s0", "--value", "52", "--date", "3/2/25"], "YYYY-MM-DD")):
        with pytest.raises(SystemExit):
            scores_main([*base, *args, "--source", "s"])
        assert msg in capsys.readouterr().err
    scores_main([*base, "paper-s0", "--value", "52", "--source", "s", "--no-leaderboard"])
    with pytest.raises(SystemExit):
        scores_main([*base, "paper-s0", "--value", "53", "--source", "s"])
    assert "--replace" in capsys.readouterr().err
    scores_main([*base, "paper-s0", "--value", "53", "--source", "s", "--replace"])
    scores_main([*base, "paper-s1", "--value", "51", "--source", "s"])
    df = pd.read_csv(tmp_path / "leaderboard.csv")
    assert df.iloc[0]["n_runs"] == 2 and df.iloc[0]["mean"] == pytest.approx(52.0)  # 53 and 51


# -- no record can break it ---------------------------------------------------------------------------------

def _bad(runs, name: str, text: str):
    d = runs / "cls" / "eurosat" / "vitb_rvsa" / name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(text)
    return d / "metrics.json"


def test_malformed_records_are_listed_as_unreadable_and_skipped(tmp_path, caplog):
    runs = tmp_path / "runs"
    _rec(runs, "cls", "eurosat", "vitb_rvsa", 0, 98.0)
    ok = json.loads((runs / "cls/eurosat/vitb_rvsa/default-s0/metrics.json").read_text())
    bad = {
        _bad(runs, "list-s0", "[1, 2, 3]"): "holds a JSON list, not an object",
        _bad(runs, "nan-s0", json.dumps({**ok, "metrics": {"OA": "98.1%"}})): "metrics.OA is '98.1%', not a number",
        _bad(runs, "half-s0", '{"status": "ok", "task": "cls"'): "not valid JSON",
        _bad(runs, "nokey-s0", json.dumps({k: v for k, v in ok.items() if k != "metric"})): "without 'metric'",
        _bad(runs, "nostatus-s0", json.dumps({"task": "cls"})): "no 'status'",
        _bad(runs, "proto-s0", json.dumps({**ok, "protocol": "train/val"})): "'protocol' is str",
        _bad(runs, "tag-s0", json.dumps({**ok, "tag": ["a"]})): "'tag' is list",
        _bad(runs, "time-s0", json.dumps({**ok, "train_time_s": "1h"})): "'train_time_s' is '1h', not a number",
    }
    with caplog.at_level("WARNING", logger="rsbench.leaderboard"):
        df, md = _board(tmp_path, runs)
    assert len(df) == 1 and df.iloc[0]["mean"] == 98.0 and df.iloc[0]["n_runs"] == 1  # the good run, alone
    unread = md.split("## Unreadable records")[1]
    for path, reason in bad.items():
        line = _line(unread, f"`{path}`")
        assert reason in line, (reason, line)
        assert any(str(path) in m and reason in m for m in caplog.messages), reason
    assert "## Failed or unfinished runs" not in md


def _write_many(results: str, runs: str, paper: str, n: int) -> None:
    for _ in range(n):
        write_leaderboard(results, runs, paper)


def test_concurrent_writers_never_race(tmp_path):
    """Runs finishing together each rewrite csv, md and png: unique temporary files, whole outputs, none left over."""
    import multiprocessing as mp

    runs = tmp_path / "runs"
    for seed, v in enumerate([98.0, 99.0]):
        _rec(runs, "cls", "eurosat", "vitb_rvsa", seed, v)  # a paper value: the png is drawn
    paper = tmp_path / "paper.csv"
    paper.write_text(PAPER_CSV)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), str(runs), str(paper), 4)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.csv", "leaderboard.md", "leaderboard.png",
                                                          "leaderboard_backbones.csv", "leaderboard_cls_eurosat.png",
                                                          "leaderboard_per_class.csv", "paper.csv", "runs"]
    assert (tmp_path / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "leaderboard_cls_eurosat.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(tmp_path / "leaderboard.csv").iloc[0]["n_runs"] == 2


def test_unwritable_results_folder_is_one_clear_error(tmp_path, capsys):
    from rsbench.errors import LeaderboardError, RsbenchError
    from rsbench.leaderboard import main

    runs = tmp_path / "runs"
    _rec(runs, "cls", "eurosat", "vitb_rvsa", 0, 98.0)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the results folder should be")
    with pytest.raises(LeaderboardError) as e:
        write_leaderboard(blocked / "results", runs)
    assert isinstance(e.value, RsbenchError) and "cannot write the leaderboard into" in str(e.value)
    assert str(blocked / "results") in str(e.value)
    with pytest.raises(SystemExit) as exit_:
        main(["--results-dir", str(blocked / "results"), "--runs-dir", str(runs)])
    assert exit_.value.code == 2 and "error: cannot write the leaderboard" in capsys.readouterr().err


def test_the_leaderboards_failure_never_changes_a_runs_status(tmp_path, monkeypatch, caplog):
    """app's leaderboard step: any error of it is a warning, the run's record and exit stay those of the run."""
    from omegaconf import OmegaConf

    import rsbench.leaderboard as lb
    from rsbench.app import _update_leaderboard

    def broken(*a, **k):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(lb, "write_leaderboard", broken)
    c = OmegaConf.create({"leaderboard": True, "paths": {"results_dir": str(tmp_path), "runs_dir": str(tmp_path)}})
    with caplog.at_level("WARNING", logger="rsbench"):
        assert _update_leaderboard(c) is None
    assert "the leaderboard was not updated: unhashable type" in caplog.text


def test_failed_runs_show_the_errors_first_line(tmp_path):
    runs = tmp_path / "runs"
    d = _rec(runs, "cls", "resisc45", "vitb_rvsa", 0, status="failed")
    rec = json.loads((d / "metrics.json").read_text())
    atomic_write_json(d / "metrics.json", {**rec, "error": "DataError: /d/x.jpg: truncated\n(2) /d/y.jpg: missing"})
    _, md = _board(tmp_path, runs)
    assert "| failed | DataError: /d/x.jpg: truncated | " in md and "y.jpg" not in md


# -- aggregation with confidence: IQM, bootstrap CI, GEO-Bench's normalised score -----------------------------

def test_iqm_matches_scipy_trim_mean_and_a_hand_worked_example():
    import numpy as np
    from scipy.stats import trim_mean

    from rsbench.leaderboard import iqm

    # 8 values: sorted 1,2,3,4,5,6,7,100; floor(8/4) = 2 cut from each end → mean(3, 4, 5, 6) = 4.5
    assert iqm([7, 1, 100, 3, 5, 2, 6, 4]) == pytest.approx(4.5)
    assert iqm([97.0, 98.0, 99.0]) == pytest.approx(98.0)  # up to 3 values nothing is cut: the mean
    rng = np.random.default_rng(7)
    for n in range(1, 13):
        v = rng.normal(90, 3, size=n)
        assert iqm(v) == pytest.approx(trim_mean(v, 0.25))


def test_bootstrap_ci_hand_worked_reproducible_and_as_scipys():
    import numpy as np
    from scipy import stats

    from rsbench.leaderboard import BOOTSTRAP_RESAMPLES, bootstrap_ci

    assert BOOTSTRAP_RESAMPLES == 1000
    # two seeds 1 and 3: a resample's IQM (= mean) is 1, 2 or 3 with odds 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles of 1000 resamples are 1 and 3
    assert bootstrap_ci([[1.0, 3.0]]) == (1.0, 3.0)
    assert bootstrap_ci([[5.0, 5.0, 5.0]]) == (5.0, 5.0)
    assert all(math.isnan(x) for x in bootstrap_ci([[5.0]]))  # one seed: no interval
    d = [97.1, 98.4, 96.9, 99.0, 98.2, 97.7, 98.9, 97.3]
    assert bootstrap_ci([d]) == bootstrap_ci([list(d)])  # seeded: the same values, the same interval
    ref = stats.bootstrap((np.array(d),), lambda x, axis: stats.trim_mean(x, 0.25, axis=axis), n_resamples=20000,
                          method="percentile", random_state=1, vectorized=True).confidence_interval
    lo, hi = bootstrap_ci([d], resamples=20000)
    assert lo == pytest.approx(ref.low, abs=0.05) and hi == pytest.approx(ref.high, abs=0.05)
    assert lo < 97.9 < hi  # around the IQM


def test_rows_carry_iqm_ci_and_the_per_seed_values(board):
    df, md = board
    row = df[(df.dataset == "eurosat") & (df.backbone == "vitb_rvsa") & (df.tag == "default")].iloc[0]
    assert row["iqm"] == pytest.approx(98.0) and row["values"] == "0=98.0; 1=99.0; 2=97.0"
    assert 97.0 <= row["ci95_low"] < 98.0 < row["ci95_high"] <= 99.0
    assert f"| 3 (0,1,2) | 98.00 [{row['ci95_low']:.2f}, {row['ci95_high']:.2f}] |" in md
    assert "1,000 resamples of the seeds" in md
    single = df[df.tag == "lr1e-3"].iloc[0]
    assert single["iqm"] == 50.0 and math.isnan(single["ci95_low"]) and "| 1 (0) | 50.00 |" in md


def test_normalised_score_per_backbone_as_geo_bench(tmp_path):
    """Two backbones on two datasets, numbers worked by hand. levir: A 80, 90 and B 70 → range 70..90,
    A → 0.5, 1.0, B → 0.0; cdd: A 50 and B 60, 40 → range 40..60, A → 0.5, B → 1.0, 0.0. Pooled (3 values,
    nothing cut): A = (0.5 + 1 + 0.5) / 3 = 2/3, B = 1/3. whu has runs of A only: left out of A's score."""
    runs = tmp_path / "runs"
    for ds, backbone, values in [("levir", "A", [80.0, 90.0]), ("levir", "B", [70.0]), ("cdd", "A", [50.0]),
                                 ("cdd", "B", [60.0, 40.0]), ("whu", "A", [10.0, 20.0])]:
        for seed, v in enumerate(values):
            _rec(runs, "cd", ds, backbone, seed, v, metric="F1", pretrain="none")
    df, md = _board(tmp_path, runs)
    scores = pd.read_csv(tmp_path / "leaderboard_backbones.csv").set_index("backbone")
    assert scores.loc["A", "score"] == pytest.approx(2 / 3) and scores.loc["B", "score"] == pytest.approx(1 / 3)
    assert scores.loc["A", "n_datasets"] == 2 and scores.loc["A", "n_runs"] == 3
    assert scores.loc["A", "left_out"] == "cd/whu" and scores.loc["A", "datasets"] == "cd/cdd, cd/levir"
    assert 0.0 <= scores.loc["A", "ci95_low"] <= 2 / 3 <= scores.loc["A", "ci95_high"] <= 1.0
    norm = df.set_index(["dataset", "backbone"])["normalized"]
    assert norm[("levir", "A")] == pytest.approx(0.75) and norm[("cdd", "B")] == pytest.approx(0.5)  # the row's IQM
    assert math.isnan(norm[("whu", "A")])
    section = md.split("## Normalised score per backbone (GEO-Bench)")[1]
    assert section.index("| A |") < section.index("| B |")  # best first
    assert "| A | none | default | 32-true | 0.667 [" in section and "| 2: cd/cdd, cd/levir | 3 | cd/whu |" in section
    again = write_leaderboard(tmp_path, runs, tmp_path / "paper.csv")
    assert again["backbones_csv"].read_text() == (tmp_path / "leaderboard_backbones.csv").read_text()  # reproducible


def test_detection_rows_show_map_and_per_class_ap(tmp_path):
    """Beside the headline AP50: COCO mAP@[.5:.95] and AP75 (means over seeds), and each class's AP50 per row
    (mean over seeds; a class without a value in one run is averaged over the runs that have it)."""
    import json

    runs = tmp_path / "runs"
    for seed, (ap50, m, ap75, plane, ship) in enumerate([(80.0, 50.0, 55.0, 90.0, 70.0), (78.0, 48.0, 53.0, 88.0, None)]):
        d = _rec(runs, "det", "dior", "vitb_rvsa", seed, ap50, metric="AP50")
        rec = json.loads((d / "metrics.json").read_text())
        rec["metrics"].update(mAP=m, AP75=ap75, per_class={"AP50": {"airplane": plane, "ship": ship},
                                                           "AP": {"airplane": 1.0, "ship": 2.0}})
        atomic_write_json(d / "metrics.json", rec)
    df, md = _board(tmp_path, runs)
    row = df[df["task"] == "det"].iloc[0]
    assert row["mean"] == 79.0 and row["also"] == "mAP=49.00; AP75=54.00"
    assert "| mAP=49.00; AP75=54.00 |" in md
    pc = pd.read_csv(tmp_path / "leaderboard_per_class.csv")
    got = {r["class"]: (r["metric"], r["mean"], r["n_runs"]) for _, r in pc.iterrows()}
    assert got == {"airplane": ("AP50", 89.0, 2), "ship": ("AP50", 70.0, 1)}
    assert "det / dior: per-class AP50" in md and "| airplane | 89.00 |" in md
