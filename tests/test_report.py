"""Study reports (``experiments.report``) and their statistics (``experiments.stats``), on run folders
written here by hand: no training, no evaluation."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from experiments import report, stats

# --------------------------------------------------------------------------- statistics


def t_cdf(q: float, df: float) -> float:
    """Student's t CDF by Simpson's rule on its density (independent of scipy)."""
    x = np.linspace(0.0, q, 200_001)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x**2 / df))
    h = x[1] - x[0]
    integral = (
        h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    )
    return 0.5 + float(integral)


def test_t_quantiles_against_closed_forms_and_tables():
    # df = 1 (Cauchy): tan(pi (p - 1/2)); df = 2: (2p - 1) sqrt(2 / (4 p (1 - p))).
    assert stats.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)
    assert stats.t_quantile(0.975, 2) == pytest.approx(0.95 * math.sqrt(2 / 0.0975), rel=1e-12)
    # Printed tables (two-sided 95%): 2.776 (df 4), 2.228 (df 10), 2.042 (df 30).
    for df, table in ((4, 2.776), (10, 2.228), (30, 2.042)):
        assert stats.t_quantile(0.975, df) == pytest.approx(table, abs=5e-4)
    # A fractional df (as Welch's): the quantile's CDF, integrated here, is the probability.
    assert t_cdf(stats.t_quantile(0.975, 1369 / 473), 1369 / 473) == pytest.approx(0.975, abs=1e-9)
    with pytest.raises(ValueError, match="positive"):
        stats.t_quantile(0.975, 0)


def test_summary_of_three_numbers_by_hand():
    summary = stats.summarize([1.0, 2.0, 4.0])
    # mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9, over n - 1 = 2: 7/3.
    assert summary.n == 3
    assert summary.mean == pytest.approx(7 / 3, rel=1e-15)
    assert summary.std == pytest.approx(math.sqrt(7 / 3), rel=1e-15)
    half = 0.95 * math.sqrt(2 / 0.0975) * math.sqrt(7 / 3) / math.sqrt(3)  # t(0.975, 2) s / sqrt(n)
    assert half == pytest.approx(3.794583, abs=1e-6)
    assert summary.low == pytest.approx(7 / 3 - half, rel=1e-12)
    assert summary.high == pytest.approx(7 / 3 + half, rel=1e-12)
    one = stats.summarize([5.0])
    assert (one.n, one.mean, one.std, one.low, one.high) == (1, 5.0, None, None, None)


def test_welch_interval_by_hand():
    a, b = [1.0, 2.0, 4.0], [2.0, 3.0]
    # Variances of the means: (7/3)/3 = 7/9 and (1/2)/2 = 1/4; Welch–Satterthwaite:
    va, vb = Fraction(7, 9), Fraction(1, 4)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 1)
    assert df == Fraction(1369, 473)  # (37/36)² / (49/162 + 1/16) = 2.8943
    result = stats.welch(a, b)
    assert result.difference == pytest.approx(7 / 3 - 5 / 2, rel=1e-14)
    assert result.df == pytest.approx(float(df), rel=1e-12)
    se = math.sqrt(float(va + vb))
    half = (result.high - result.low) / 2
    assert result.low + half == pytest.approx(result.difference, rel=1e-12)
    assert t_cdf(half / se, float(df)) == pytest.approx(0.975, abs=1e-9)
    assert stats.welch([1.0], b) == stats.Difference(1.0 - 2.5, None, None, None)
    assert stats.welch([2.0, 2.0], [1.0, 1.0]) == stats.Difference(1.0, 1.0, 1.0, None)


# --------------------------------------------------------------------------- run folders

HASH_A = "a" * 64
HASH_B = "b" * 64


def protocol(**overrides) -> dict:
    """What experiments.evaluate records (the fields the report compares, and some it ignores)."""
    values = {
        "dataset": "mnist",
        "reference_split": "test",
        "n_real": 10000,
        "n_generated": 1000,
        "reference_examples": "all",
        "feature_net": "classifier_mnist",
        "feature_net_hash": HASH_A,
        "feature_dim": 128,
        "resizer": "none",
        "quantization": "uint8",
        "fid_covariance": "float64",
        "kid_subsets": 100,
        "kid_subset_size": 1000,
        "kid_kernel": "cubic",
        "pr_k": 3,
        "family_options": {},
        "seed": 0,
        "workdir": "/somewhere",
        "git_commit": "0" * 40,
        "command": "python -m experiments.evaluate",
    }
    values.update(overrides)
    return values


def make_run(
    root,
    name,
    *,
    seed,
    settings,
    steps=10,
    final=None,
    best=None,
    history=None,
    checkpoint=None,
    eval_protocol=None,
):
    """A run folder as training and ``experiments.evaluate`` leave it.

    ``settings``: dotted config keys; ``final``/``best``: the metrics of eval/<steps>.json and
    eval/best_<step>.json (``best`` as ``(step, metrics)``); ``history``: ``{step: {eval key: v}}``.
    """
    path = root / name
    config = {
        "seed": seed,
        "data_seed": None,
        "num_train_steps": steps,
        "batch_size": 64,
        "data": {"name": "mnist", "dir": f"/data/{name}"},  # paths differ: not a setting
        "model": {"loss": "ns", "features": [16, 8]},
        "optimizer": {"learning_rate": 0.001},
        "evaluation": {"cache_dir": f"/cache/{seed}"},
    }
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (path / "checkpoints" / str(steps if checkpoint is None else checkpoint)).mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (path / "eval").mkdir()
    if final is not None:
        evaluation = {**final, "floor": {"fid": 0.3}, "protocol": eval_protocol or protocol()}
        (path / "eval" / f"{steps}.json").write_text(json.dumps(evaluation))
    if best is not None:
        step, metrics = best
        evaluation = {**metrics, "floor": None, "protocol": eval_protocol or protocol()}
        (path / "eval" / f"best_{step}.json").write_text(json.dumps(evaluation))
    lines = [
        json.dumps({"step": s, "d_loss": 0.5, **v}) for s, v in sorted((history or {}).items())
    ]
    (path / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines))
    return path


# Two learning rates, three seeds each; fid and precision per seed.
FID = {0.001: [10.0, 12.0, 17.0], 0.01: [20.0, 21.0, 25.0]}
PRECISION = {0.001: [0.5, 0.6, 0.7], 0.01: [0.4, 0.4, 0.5]}


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "study"
    for lr, fids in FID.items():
        for seed, fid in enumerate(fids):
            make_run(
                root,
                f"lr={lr},seed={seed}",
                seed=seed,
                settings={"optimizer.learning_rate": lr},
                final={"fid": fid, "precision": PRECISION[lr][seed], "kid_mean": 0.01 * seed},
                history={5: {"eval/fid": 2 * fid}, 10: {"eval/fid": fid}},
            )
    return root


def read_csv(root):
    with open(root / "report.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_table_of_a_study(study):
    report.write(report.gather(study, baseline="learning_rate=0.001"))
    rows = read_csv(study)
    assert [row["setting"] for row in rows] == ["learning_rate=0.001", "learning_rate=0.01"]
    assert [row["optimizer.learning_rate"] for row in rows] == ["0.001", "0.01"]
    for row, lr in zip(rows, FID, strict=True):
        values = FID[lr]
        mean = sum(values) / 3
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
        half = 0.95 * math.sqrt(2 / 0.0975) * std / math.sqrt(3)  # t(0.975, 2), closed form
        assert row["seeds"] == "3" and row["fid_n"] == "3" and row["unfinished"] == "0"
        assert float(row["fid_mean"]) == pytest.approx(mean, rel=1e-12)
        assert float(row["fid_std"]) == pytest.approx(std, rel=1e-12)
        assert float(row["fid_ci95_low"]) == pytest.approx(mean - half, rel=1e-12)
        assert float(row["fid_ci95_high"]) == pytest.approx(mean + half, rel=1e-12)
    # fid: 13 ± sqrt(13) vs 22 ± sqrt(7); the difference to the baseline (lr=0.001).
    assert [row["baseline"] for row in rows] == ["yes", ""]
    assert rows[0]["fid_diff"] == rows[0]["fid_diff_ci95_low"] == ""
    assert float(rows[1]["fid_diff"]) == pytest.approx(9.0, rel=1e-12)
    df = (13 / 3 + 7 / 3) ** 2 / ((13 / 3) ** 2 / 2 + (7 / 3) ** 2 / 2)
    assert float(rows[1]["fid_diff_df"]) == pytest.approx(df, rel=1e-12)
    half = (float(rows[1]["fid_diff_ci95_high"]) - float(rows[1]["fid_diff_ci95_low"])) / 2
    assert t_cdf(half / math.sqrt(13 / 3 + 7 / 3), df) == pytest.approx(0.975, abs=1e-9)
    # Columns in the evaluator's order, each with its protocol's id.
    metric_columns = [name[: -len("_mean")] for name in rows[0] if name.endswith("_mean")]
    assert metric_columns == ["fid", "kid_mean", "precision"]
    assert rows[0]["fid_protocol"] == report.protocol_id(
        report.metric_protocol("fid", {"protocol": protocol()})
    )
    text = (study / "report.md").read_text()
    assert "| learning_rate=0.001 | 3 | 13 ± 3.606 | [4.043, 21.96] |" in text
    assert (
        "Partial" not in text
        and "6 runs: 6 finished and evaluated, 0 unfinished, 0 missing." in text
    )
    assert f"feature_net_hash={'a' * 12}…" in text
    assert "| learning_rate=0.01 | +9 [" in text


def test_a_rerun_writes_identical_files(study):
    report.write(report.gather(study, baseline="learning_rate=0.001"))
    first = {name: (study / name).read_bytes() for name in ("report.md", "report.csv")}
    os.utime(study / "lr=0.01,seed=1" / "config.json", (0, 0))
    report.write(report.gather(study, baseline="learning_rate=0.001"))
    assert {name: (study / name).read_bytes() for name in first} == first


def test_plots_one_per_eval_key(study):
    written = report.write(report.gather(study))
    plot = study / "plots" / "eval_fid.png"
    assert plot in written
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (900, 520)
        pixels = np.asarray(image.convert("RGB"))
    blue, orange = np.array(report_colour(0)), np.array(report_colour(1))
    assert (pixels == blue).all(axis=-1).sum() > 50  # the first setting's line
    assert (pixels == orange).all(axis=-1).sum() > 50
    series = report.plot_series(report.gather(study), "eval/fid")
    assert [s.label for s in series] == ["learning_rate=0.001", "learning_rate=0.01"]
    assert series[0].x == (5.0, 10.0) and series[0].y == pytest.approx((26.0, 13.0))
    assert series[0].high[1] - series[0].y[1] == pytest.approx(math.sqrt(13))


def report_colour(index):
    from experiments import plots

    return plots.COLOURS[index]


def test_partial_study_counts_and_lists_what_is_left_out(study):
    make_run(
        study, "lr=0.01,seed=3", seed=3, settings={"optimizer.learning_rate": 0.01}, checkpoint=4
    )
    make_run(study, "lr=0.01,seed=4", seed=4, settings={"optimizer.learning_rate": 0.01})
    names = [p.name for p in study.iterdir()] + ["lr=0.001,seed=9"]
    (study / "sweep.json").write_text(json.dumps({"runs": [{"name": n} for n in names]}))
    report.write(report.gather(study))
    text = (study / "report.md").read_text()
    assert "**Partial study.** 9 runs: 6 finished and evaluated, 2 unfinished, 1 missing." in text
    assert (
        "| lr=0.01,seed=3 | learning_rate=0.01 | seed=3 | unfinished: training unfinished (checkpoint 4 of 10 steps) |"
        in text
    )
    assert (
        "| lr=0.01,seed=4 | learning_rate=0.01 | seed=4 | unfinished: not evaluated (no eval/10.json) |"
        in text
    )
    assert "| lr=0.001,seed=9 | ? | ? | missing: listed in sweep.json, not started |" in text
    rows = read_csv(study)
    assert [(row["seeds"], row["unfinished"]) for row in rows] == [("3", "0"), ("3", "2")]
    assert float(rows[1]["fid_mean"]) == pytest.approx(22.0)


def test_settings_from_configs_made_by_hand(tmp_path):
    # Nested folders, no sweep.json; seeds, data.dir and evaluation.cache_dir differ too.
    make_run(tmp_path, "hinge/a", seed=0, settings={"model.loss": "hinge"}, final={"fid": 1.0})
    make_run(tmp_path, "hinge/b", seed=7, settings={"model.loss": "hinge"}, final={"fid": 3.0})
    make_run(tmp_path, "ns", seed=0, settings={"model.features": [32, 8]}, final={"fid": 5.0})
    make_run(tmp_path, "deep/er/ns2", seed=1, settings={}, final={"fid": 9.0})
    study = report.gather(tmp_path)
    assert study.keys == ["model.features", "model.loss"]
    assert [s.name for s in study.settings] == [
        "features=[16, 8],loss=hinge",
        "features=[16, 8],loss=ns",
        "features=[32, 8],loss=ns",
    ]
    assert [[r.name for r in study.members[s.id]] for s in study.settings] == [
        ["hinge/a", "hinge/b"],
        ["deep/er/ns2"],
        ["ns"],
    ]
    baseline = report.find_baseline("features=(32,8)", study.settings, study.keys)
    assert baseline.name == "features=[32, 8],loss=ns"
    by_name = report.find_baseline("features=[16, 8],loss=ns", study.settings, study.keys)
    assert by_name == study.settings[1]
    with pytest.raises(report.ReportUsageError, match="matches 2 settings"):
        report.find_baseline("features=[16,8]", study.settings, study.keys)
    with pytest.raises(report.ReportUsageError, match=r"KEY one of .*\(features, loss\)"):
        report.find_baseline("seed=0", study.settings, study.keys)
    # One run alone: one setting.
    alone = report.gather(tmp_path / "ns")
    assert alone.keys == [] and [s.name for s in alone.settings] == ["all"]


def test_different_protocols_are_refused_or_split(study):
    other = protocol(feature_net_hash=HASH_B, n_generated=500)
    make_run(
        study,
        "x/lr=0.01,seed=9",
        seed=9,
        settings={"optimizer.learning_rate": 0.01},
        final={"fid": 99.0, "precision": 0.1},
        eval_protocol=other,
    )
    with pytest.raises(report.ReportError) as refused:
        report.gather(study)
    message = str(refused.value)
    assert "\n" not in message and "'fid'" in message
    assert f"feature_net_hash: {'a' * 12}… in lr=0.001,seed=0, " in message
    assert f"{'b' * 12}… in x/lr=0.01,seed=9" in message
    assert "n_generated: 1000 in" in message and "500 in x/lr=0.01,seed=9" in message
    # Only kid_mean (which that run lacks) is comparable.
    assert [c.label for c in report.gather(study, metrics=["kid_mean"]).tables["final"]] == [
        "kid_mean"
    ]
    split = report.gather(study, split_protocols=True)
    labels = [c.label for c in split.tables["final"]]
    first, second = (
        report.protocol_id(report.metric_protocol("fid", {"protocol": p}))
        for p in (protocol(), other)
    )
    assert f"fid@{first}" in labels and f"fid@{second}" in labels and "kid_mean" in labels
    report.write(split, plots_too=False)
    rows = {row["setting"]: row for row in read_csv(study)}
    assert float(rows["learning_rate=0.01"][f"fid@{first}_mean"]) == pytest.approx(22.0)
    assert rows["learning_rate=0.01"][f"fid@{second}_mean"] == "99.0"
    assert rows["learning_rate=0.01"][f"fid@{second}_n"] == "1"
    assert rows["learning_rate=0.001"][f"fid@{second}_n"] == "0"


def test_a_family_metric_compares_by_its_options(tmp_path):
    make_run(
        tmp_path,
        "a",
        seed=0,
        settings={},
        final={"nll": 90.0},
        eval_protocol=protocol(family_options={"iwae_k": 5000}),
    )
    make_run(
        tmp_path,
        "b",
        seed=1,
        settings={},
        final={"nll": 91.0},
        eval_protocol=protocol(family_options={"iwae_k": 5000}, feature_net_hash=HASH_B),
    )
    assert [c.label for c in report.gather(tmp_path).tables["final"]] == ["nll"]
    make_run(
        tmp_path,
        "c",
        seed=2,
        settings={},
        final={"nll": 95.0},
        eval_protocol=protocol(family_options={"iwae_k": 50}),
    )
    with pytest.raises(report.ReportError, match=r"family_options: .*iwae_k.*50.* in c"):
        report.gather(tmp_path)


def test_best_checkpoints_get_their_own_columns(study):
    make_run(
        study,
        "kept",
        seed=5,
        settings={"optimizer.learning_rate": 0.01},
        final={"fid": 22.0},
        best=(6, {"fid": 18.0}),
    )
    (study / "kept" / "eval" / "best_4.json").write_text(
        json.dumps({"fid": 19.0, "protocol": protocol()})
    )
    report.write(report.gather(study), plots_too=False)
    rows = {row["setting"]: row for row in read_csv(study)}
    assert rows["learning_rate=0.01"]["best/fid_mean"] == "18.0"  # the newest best_<step>.json
    assert rows["learning_rate=0.01"]["best/fid_n"] == "1"
    assert rows["learning_rate=0.001"]["best/fid_n"] == "0"
    text = (study / "report.md").read_text()
    assert "## Best checkpoints (`eval/best_<step>.json`)" in text
    assert "| 22 ± 2.55 (n=3) |" not in text and "| 4 | 22 ± 2.16 |" in text


def run_report(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.report", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command(study, tmp_path):
    done = run_report(study, "--baseline=learning_rate=0.01", "--noplots")
    assert done.returncode == 0, done.stderr
    assert "2 settings, 6 of 6 runs finished and evaluated" in done.stdout
    assert not (study / "plots").exists()
    assert "Difference to the baseline `learning_rate=0.01`" in (study / "report.md").read_text()
    for args, status, words in (
        ([tmp_path / "nothing"], 2, "does not exist"),
        ([tmp_path], 2, "expected one folder"),  # with a second argument below
        ([study, "--baseline=loss=hinge"], 2, "--baseline=loss=hinge"),
        ([study, "--metrics=fid,xyz"], 2, "--metrics: xyz not in any evaluation"),
        ([tmp_path / "empty"], 1, "no runs under"),
    ):
        (tmp_path / "empty").mkdir(exist_ok=True)
        argv = [*args, "extra"] if words == "expected one folder" else args
        done = run_report(*argv)
        assert done.returncode == status, (args, done.stderr)
        assert done.stderr.startswith("error: ") and words in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_help():
    done = run_report("--help")
    assert done.returncode == 0 and done.stderr == ""
    assert "Usage: python -m experiments.report DIR" in done.stdout
    for flag in ("--baseline", "--metrics", "--[no]split_protocols", "--[no]plots"):
        assert f"  {flag}" in done.stdout
