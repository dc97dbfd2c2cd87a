"""Gathers a study's runs into one table: every run's final evaluation, a row per setting.

Usage: python -m experiments.report DIR [--baseline=KEY=VALUE,...|SETTING] [--metrics=fid,kid_mean]
       [--split_protocols] [--noplots]

Runs are found recursively under DIR: a run is a folder with ``config.json`` and ``checkpoints/`` or
``eval/`` (a sweep's run folders, or runs made by hand). A run's *setting* is the value of every
config key that differs between the runs found, except the seeds (``seed``, ``data_seed``) and
where-things-are keys (``data.dir``, ``evaluation.cache_dir``, ``evaluation.inception_weights``);
runs of one setting are its seeds. A run's final evaluation is ``eval/<num_train_steps>.json``
(``python -m experiments.evaluate --workdir=RUN``); its best checkpoint's, when kept, the newest
``eval/best_<step>.json``.

Writes ``DIR/report.md`` and ``DIR/report.csv``: for each setting and metric the mean, the standard
deviation over seeds, the 95% Student-t interval of the mean and the number of seeds; with
``--baseline``, each setting's difference to the baseline setting with its 95% Welch interval; the
protocol of every metric; the runs left out (unfinished: no final evaluation yet; missing: named by
``DIR/sweep.json`` but never started). ``DIR/plots/<key>.png``: each ``eval/`` key of the runs'
``metrics.jsonl`` against the step, one line per setting (the mean over its seeds) in a band of ±1
standard deviation.

Results under different protocols (another feature net or its weights, another number of samples,
reference split, metric parameters or family options) are never averaged or compared: the command
stops with one line naming the runs, or with ``--split_protocols`` reports each protocol in its own
column. The same folder gives the same table, byte for byte (sorted, no timestamps).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments import stats
from experiments.errors import ConfigError
from experiments.workdir import config_path

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
PLOTS_DIR = "plots"
SWEEP_FILE = "sweep.json"
SEED_KEYS = ("seed", "data_seed")
# Where things are, not what was run.
PATH_KEYS = ("data.dir", "evaluation.cache_dir", "evaluation.inception_weights")
EVAL_PREFIX = "eval/"
BEST_FILE = re.compile(r"best_(\d+)\.json")
ABSENT = "(absent)"
# The order of the evaluator's metric keys in the table; others follow alphabetically.
METRIC_ORDER = (
    "fid",
    "kid_mean",
    "kid_std",
    "is_mean",
    "is_std",
    "precision",
    "recall",
    "density",
    "coverage",
    "accuracy",
    "intra_fid",
    "nll",
)
# The protocol fields that decide whether two values of a metric can be compared
# (experiments.evaluation.evaluator records them in eval/<step>.json's "protocol").
SAMPLE_PROTOCOL = (
    "dataset",
    "reference_split",
    "n_real",
    "n_generated",
    "reference_examples",
    "feature_net",
    "feature_net_hash",
    "feature_dim",
    "feature_layer",
    "feature_scale",
    "resizer",
    "quantization",
)
METRIC_PROTOCOL = {
    "fid": ("fid_covariance",),
    "kid_mean": ("kid_subsets", "kid_subset_size", "kid_kernel"),
    "kid_std": ("kid_subsets", "kid_subset_size", "kid_kernel"),
    "is_mean": ("is_splits",),
    "is_std": ("is_splits",),
    "precision": ("pr_k",),
    "recall": ("pr_k",),
    "density": ("dc_k",),
    "coverage": ("dc_k",),
    "accuracy": (),
    "intra_fid": ("fid_covariance",),
}
# A family's own metrics (a VAE's nll and any other key).
FAMILY_PROTOCOL = ("dataset", "reference_split", "family_options")


class ReportError(ConfigError):
    """The runs cannot be reported as asked (one line; exit status 1)."""


class ReportUsageError(ReportError):
    """A flag that does not fit the runs found (one line; exit status 2)."""


# --------------------------------------------------------------------------------------------
# Runs


@dataclass
class Run:
    """One run folder and what the report reads from it."""

    name: str  # its path relative to the report's folder, '/'-separated ('.' for the folder itself)
    path: Path
    config: dict  # dotted key -> value, from its (latest) config.json
    final: dict | None = None  # eval/<num_train_steps>.json
    best: dict | None = None  # the newest eval/best_<step>.json
    best_step: int | None = None
    problem: str | None = None  # why there is no final evaluation
    history: dict = field(default_factory=dict)  # eval/ key -> {step: value}, from metrics.jsonl

    @property
    def seed_text(self) -> str:
        parts = [f"{key}={display(self.config[key])}" for key in SEED_KEYS if key in self.config]
        parts = [p for p in parts if p != "data_seed=null"]
        return ",".join(parts)


def flatten(values: dict, prefix: str = "") -> dict:
    """``{'a': {'b': 1}}`` → ``{'a.b': 1}`` (lists stay values)."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def display(value) -> str:
    """A config value as the report shows it (strings bare, the rest as JSON)."""
    if value is ABSENT_VALUE:
        return ABSENT
    return value if isinstance(value, str) else canonical(value)


class _Absent:
    def __repr__(self):
        return ABSENT


ABSENT_VALUE = _Absent()


def is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and (
        (path / "checkpoints").is_dir() or (path / "eval").is_dir()
    )


def find_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` (``root`` itself included), sorted; a run's own folders are not
    searched."""
    found = []
    for directory, subdirectories, _ in os.walk(root):
        path = Path(directory)
        if is_run(path):
            found.append(path)
            subdirectories[:] = []
        else:
            subdirectories.sort()
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_json(path: Path):
    """The JSON in ``path``; ReportError naming it when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"cannot read {path}: {error}") from error


def latest_checkpoint(path: Path) -> int | None:
    steps = [int(p.name) for p in (path / "checkpoints").glob("*") if p.name.isdigit()]
    return max(steps) if steps else None


def eval_history(path: Path) -> dict:
    """``{key: {step: value}}`` of the ``eval/`` numbers in ``metrics.jsonl`` (the last record of a
    step wins; lines cut off by a kill are skipped)."""
    history: dict = {}
    metrics_file = path / "metrics.jsonl"
    if not metrics_file.is_file():
        return history
    for line in metrics_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        for key, value in record.items():
            if key.startswith(EVAL_PREFIX) and is_number(value):
                history.setdefault(key, {})[record["step"]] = float(value)
    return history


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_run(root: Path, path: Path) -> Run:
    name = path.relative_to(root).as_posix()
    config = read_json(config_path(path))
    if not isinstance(config, dict):
        raise ReportError(f"{config_path(path)} does not hold a config (a JSON object)")
    run = Run(name=name, path=path, config=flatten(config), history=eval_history(path))
    steps = run.config.get("num_train_steps")
    final = path / "eval" / f"{steps}.json"
    if not is_number(steps):
        run.problem = "its config has no num_train_steps"
    elif final.is_file():
        try:
            run.final = read_json(final)
        except ReportError as error:
            run.problem = str(error)
    else:
        latest = latest_checkpoint(path)
        if latest is None or latest < steps:
            run.problem = f"training unfinished (checkpoint {latest} of {steps} steps)"
        else:
            run.problem = f"not evaluated (no eval/{steps}.json)"
    best = [
        (int(match.group(1)), p)
        for p in (path / "eval").glob("best_*.json")
        if (match := BEST_FILE.fullmatch(p.name))
    ]
    if best:
        run.best_step, best_path = max(best)
        try:
            run.best = read_json(best_path)
        except ReportError:
            run.best_step = None
    return run


def expected_runs(root: Path) -> list[str]:
    """Run folder names that ``DIR/sweep.json`` lists (none without one, or when unreadable)."""
    try:
        description = json.loads((root / SWEEP_FILE).read_text())
        return sorted(str(run["name"]) for run in description["runs"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return []


# --------------------------------------------------------------------------------------------
# Settings


def is_setting_key(key: str) -> bool:
    return key not in SEED_KEYS and key not in PATH_KEYS and key.rsplit(".", 1)[-1] != "workdir"


def setting_keys(runs: Sequence[Run]) -> list[str]:
    """The config keys whose values differ between ``runs`` (seeds and paths excluded), sorted."""
    keys = sorted({key for run in runs for key in run.config})
    return [
        key
        for key in keys
        if is_setting_key(key) and len({canonical(run.config.get(key, ABSENT)) for run in runs}) > 1
    ]


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its last part, or whole where two keys share the last part."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: part if last.count(part) == 1 else key for key, part in zip(keys, last, strict=True)
    }


def canonical_or_absent(value) -> str:
    return ABSENT if value is ABSENT_VALUE else canonical(value)


def order_key(value):
    """Sorts numbers numerically, then strings, then the rest by their JSON."""
    if value is ABSENT_VALUE:
        return (5, "")
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if is_number(value):
        return (2, value, "")
    if isinstance(value, str):
        return (3, 0, value)
    return (4, 0, canonical(value))


@dataclass(frozen=True)
class Setting:
    values: tuple  # (key, value) for each setting key
    name: str

    @property
    def id(self) -> str:
        return canonical(
            [[key, display(value), canonical_or_absent(value)] for key, value in self.values]
        )

    @property
    def sort_key(self):
        return tuple(order_key(value) for _, value in self.values)


def setting_of(run: Run, keys: Sequence[str], names: dict) -> Setting:
    values = tuple((key, run.config.get(key, ABSENT_VALUE)) for key in keys)
    name = ",".join(f"{names[key]}={display(value)}" for key, value in values) or "all"
    return Setting(values, name)


def value_matches(text: str, value) -> bool:
    """Whether ``text`` (from the command line) names the config value ``value``."""
    text = text.strip()
    if display(value) == text:
        return True
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    if is_number(value):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    if isinstance(value, list):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return False
        return isinstance(parsed, (list, tuple)) and list(parsed) == value
    if value is None:
        return text in ("None", "null")
    return False


def find_baseline(text: str, settings: Sequence[Setting], keys: Sequence[str]) -> Setting:
    """The setting ``--baseline`` names: a setting's name, or ``KEY=VALUE,...`` (KEY a differing
    config key, whole or by its last part) matching exactly one setting."""
    for setting in settings:
        if setting.name == text:
            return setting
    names = short_names(keys)
    wanted = []
    for item in re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", text):
        key, equals, value = item.partition("=")
        key = key.strip()
        matches = [k for k in keys if key in (k, names[k]) or k.endswith("." + key)]
        if not equals or len(matches) != 1:
            available = ", ".join(names[k] for k in keys) or "none: every run has one setting"
            raise ReportUsageError(
                f"--baseline={text}: {item.strip()!r} is not KEY=VALUE with KEY one of the keys "
                f"that differ between the runs ({available})"
            )
        wanted.append((matches[0], value))
    chosen = [
        setting
        for setting in settings
        if all(value_matches(value, dict(setting.values)[key]) for key, value in wanted)
    ]
    if len(chosen) != 1:
        listed = "; ".join(setting.name for setting in settings)
        found = "no setting" if not chosen else f"{len(chosen)} settings"
        raise ReportUsageError(f"--baseline={text} matches {found}; the settings are: {listed}")
    return chosen[0]


# --------------------------------------------------------------------------------------------
# Metrics and their protocols


def metric_values(evaluation: dict) -> dict[str, float]:
    """The scalar metrics of an eval JSON (its top-level numbers)."""
    return {
        key: float(value)
        for key, value in evaluation.items()
        if key not in ("floor", "protocol") and is_number(value)
    }


def metric_order(names) -> list[str]:
    known = [name for name in METRIC_ORDER if name in names]
    return known + sorted(name for name in names if name not in METRIC_ORDER)


def protocol_fields(metric: str) -> tuple[str, ...]:
    if metric in METRIC_PROTOCOL:
        return SAMPLE_PROTOCOL + METRIC_PROTOCOL[metric]
    return FAMILY_PROTOCOL


def metric_protocol(metric: str, evaluation: dict) -> dict:
    """The fields of ``evaluation``'s protocol that decide whether ``metric`` compares."""
    protocol = evaluation.get("protocol") or {}
    return {name: protocol[name] for name in protocol_fields(metric) if name in protocol}


def protocol_id(protocol: dict) -> str:
    return hashlib.sha256(canonical(protocol).encode()).hexdigest()[:8]


def shown(value) -> str:
    text = display(value)
    return text[:12] + "…" if re.fullmatch(r"[0-9a-f]{40,}", text) else text


@dataclass(frozen=True)
class Column:
    metric: str
    protocol: dict
    label: str  # the metric, or metric@<protocol id> when split

    @property
    def protocol_id(self) -> str:
        return protocol_id(self.protocol)


def conflict_message(metric: str, groups: dict[str, tuple[dict, list[str]]], kind: str) -> str:
    """One line: the protocol fields that differ for ``metric`` and the runs of each value."""
    protocols = [protocol for protocol, _ in groups.values()]
    differing = sorted(
        name
        for name in {n for p in protocols for n in p}
        if len({canonical(p.get(name, ABSENT)) for p in protocols}) > 1
    )
    parts = []
    for name in differing:
        by_value: dict[str, list[str]] = {}
        for protocol, runs in groups.values():
            by_value.setdefault(shown(protocol.get(name, ABSENT)), []).extend(runs)
        listed = "; ".join(
            f"{value} in {', '.join(sorted(runs))}" for value, runs in by_value.items()
        )
        parts.append(f"{name}: {listed}")
    return (
        f"{kind} metric {metric!r} has results under different protocols ({' | '.join(parts)}); "
        "they are not averaged or compared (select runs or metrics, or pass --split_protocols)"
    )


def columns_for(
    runs: Sequence[Run], which: str, wanted: Sequence[str] | None, split: bool
) -> list[Column]:
    """The table's columns for the ``which`` ('final' or 'best') evaluations of ``runs``."""
    evaluations = [(run, getattr(run, which)) for run in runs if getattr(run, which) is not None]
    present = {name for _, evaluation in evaluations for name in metric_values(evaluation)}
    names = [name for name in wanted if name in present] if wanted else metric_order(present)
    columns = []
    for metric in names:
        groups: dict[str, tuple[dict, list[str]]] = {}
        for run, evaluation in evaluations:
            if metric in metric_values(evaluation):
                protocol = metric_protocol(metric, evaluation)
                groups.setdefault(canonical(protocol), (protocol, []))[1].append(run.name)
        if len(groups) > 1 and not split:
            raise ReportError(conflict_message(metric, groups, which))
        for text in sorted(groups):
            protocol = groups[text][0]
            label = metric if len(groups) == 1 else f"{metric}@{protocol_id(protocol)}"
            columns.append(Column(metric, protocol, label))
    return columns


def column_values(column: Column, runs: Sequence[Run], which: str) -> list[float]:
    values = []
    for run in runs:
        evaluation = getattr(run, which)
        if evaluation is None:
            continue
        value = metric_values(evaluation).get(column.metric)
        if value is not None and metric_protocol(column.metric, evaluation) == column.protocol:
            values.append(value)
    return values


# --------------------------------------------------------------------------------------------
# The report


@dataclass
class Study:
    root: Path
    runs: list[Run]
    keys: list[str]
    settings: list[Setting]
    members: dict  # setting id -> runs
    missing: list[str]
    baseline: Setting | None
    tables: dict  # 'final'/'best' -> columns


def gather(
    root: Path,
    baseline: str = "",
    metrics: Sequence[str] | None = None,
    split_protocols: bool = False,
) -> Study:
    paths = find_runs(root)
    if not paths:
        raise ReportError(
            f"no runs under {root} (a run is a folder with config.json and checkpoints/ or eval/)"
        )
    runs = [load_run(root, path) for path in paths]
    keys = setting_keys(runs)
    names = short_names(keys)
    members: dict[str, list[Run]] = {}
    by_id: dict[str, Setting] = {}
    for run in runs:
        setting = setting_of(run, keys, names)
        by_id[setting.id] = setting
        members.setdefault(setting.id, []).append(run)
    settings = sorted(by_id.values(), key=lambda s: (s.sort_key, s.id))
    found = {run.name for run in runs}
    missing = [name for name in expected_runs(root) if name not in found]
    if metrics:
        available = {
            name
            for run in runs
            for evaluation in (run.final, run.best)
            if evaluation is not None
            for name in metric_values(evaluation)
        }
        unknown = [name for name in metrics if name not in available]
        if unknown:
            raise ReportUsageError(
                f"--metrics: {', '.join(unknown)} not in any evaluation; "
                f"the runs have {', '.join(metric_order(available)) or 'none'}"
            )
    chosen = find_baseline(baseline, settings, keys) if baseline else None
    tables = {
        which: columns_for(runs, which, metrics, split_protocols) for which in ("final", "best")
    }
    return Study(root, runs, keys, settings, members, missing, chosen, tables)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}"


def signed(value: float) -> str:
    return f"{value:+.4g}"


def csv_number(value) -> str:
    return "" if value is None else repr(float(value))


def cell(summary: stats.Summary | None) -> tuple[str, str]:
    if summary is None:
        return "—", "—"
    mean = fmt(summary.mean) if summary.std is None else f"{fmt(summary.mean)} ± {fmt(summary.std)}"
    if summary.low is None:
        return mean, "—"
    return mean, f"[{fmt(summary.low)}, {fmt(summary.high)}]"


def summaries(study: Study, which: str) -> dict:
    """``{(setting id, column label): (Summary, values)}``."""
    result = {}
    for setting in study.settings:
        for column in study.tables[which]:
            values = column_values(column, study.members[setting.id], which)
            result[setting.id, column.label] = (
                stats.summarize(values) if values else None,
                values,
            )
    return result


def differences(study: Study, which: str, table: dict) -> dict:
    result = {}
    if study.baseline is None:
        return result
    for setting in study.settings:
        for column in study.tables[which]:
            _, values = table[setting.id, column.label]
            _, reference = table[study.baseline.id, column.label]
            result[setting.id, column.label] = (
                stats.welch(values, reference) if values and reference else None
            )
    return result


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    escape = lambda text: text.replace("|", "\\|")
    lines = ["| " + " | ".join(escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return lines


def run_status(run: Run) -> str:
    return "finished" if run.final is not None else f"unfinished: {run.problem}"


def markdown(study: Study) -> str:
    runs, root = study.runs, study.root
    finished = [run for run in runs if run.final is not None]
    unfinished = [run for run in runs if run.final is None]
    lines = [f"# Report: {root.name or root}", ""]
    total = len(runs) + len(study.missing)
    counts = (
        f"{total} runs: {len(finished)} finished and evaluated, {len(unfinished)} unfinished, "
        f"{len(study.missing)} missing."
    )
    if unfinished or study.missing:
        lines += [
            f"**Partial study.** {counts} Only the finished runs' final evaluations are in the "
            "tables; the others are listed under Runs.",
            "",
        ]
    else:
        lines += [counts, ""]
    names = short_names(study.keys)
    if study.keys:
        described = ", ".join(f"`{key}`" for key in study.keys)
        lines += [
            f"Settings differ in {described}; the runs of a setting differ in their seeds.",
            "",
        ]
    else:
        lines += ["Every run has the same config apart from its seeds: one setting, `all`.", ""]
    lines += [
        "Each cell: mean ± standard deviation over seeds (n − 1); 95% CI: Student-t interval of "
        "the mean. A setting with one seed has no spread or interval (—).",
        "",
    ]
    for which, title in (("final", "Final checkpoints"), ("best", "Best checkpoints")):
        columns = study.tables[which]
        if which == "best" and not columns:
            continue
        source = "`eval/<num_train_steps>.json`" if which == "final" else "`eval/best_<step>.json`"
        lines += [f"## {title} ({source})", ""]
        table = summaries(study, which)
        header = ["setting", "seeds"]
        for column in columns:
            header += [column.label, f"{column.label} 95% CI"]
        rows = []
        for setting in study.settings:
            evaluated = [r for r in study.members[setting.id] if getattr(r, which) is not None]
            row = [setting.name, str(len(evaluated))]
            for column in columns:
                summary, _ = table[setting.id, column.label]
                mean, interval = cell(summary)
                if summary is not None and summary.n != len(evaluated):
                    mean += f" (n={summary.n})"
                row += [mean, interval]
            rows.append(row)
        lines += [*markdown_table(header, rows), ""]
        if study.baseline is not None and columns:
            diffs = differences(study, which, table)
            lines += [
                f"Difference to the baseline `{study.baseline.name}` (setting − baseline; 95% Welch "
                "interval, Welch–Satterthwaite degrees of freedom):",
                "",
            ]
            rows = []
            for setting in study.settings:
                row = [setting.name]
                for column in columns:
                    difference = diffs[setting.id, column.label]
                    if setting == study.baseline:
                        row.append("baseline")
                    elif difference is None:
                        row.append("—")
                    elif difference.low is None:
                        row.append(f"{signed(difference.difference)} (no interval: n < 2)")
                    else:
                        row.append(
                            f"{signed(difference.difference)} "
                            f"[{fmt(difference.low)}, {fmt(difference.high)}]"
                        )
                rows.append(row)
            lines += [*markdown_table(["setting", *[c.label for c in columns]], rows), ""]
    lines += ["## Protocol", ""]
    listed = set()
    for which in ("final", "best"):
        for column in study.tables[which]:
            key = (column.label, column.protocol_id)
            if key in listed:
                continue
            listed.add(key)
            fields = ", ".join(f"{name}={shown(value)}" for name, value in column.protocol.items())
            lines.append(f"- `{column.label}` (protocol {column.protocol_id}): {fields or 'none'}")
    if not listed:
        lines.append("No evaluations yet.")
    lines += ["", "## Runs", ""]
    rows = [
        [run.name, study_setting_name(study, run, names), run.seed_text, run_status(run)]
        for run in runs
    ]
    rows += [
        [name, "?", "?", f"missing: listed in {SWEEP_FILE}, not started"] for name in study.missing
    ]
    lines += [*markdown_table(["run", "setting", "seed", "status"], rows), ""]
    duplicates = duplicate_seeds(study)
    if duplicates:
        lines += [f"Note: runs with the same setting and seed: {'; '.join(duplicates)}.", ""]
    plots = plot_keys(runs)
    if plots:
        lines += [
            "## Plots",
            "",
            "From the runs' `metrics.jsonl` (in-training evaluations): the mean over seeds, "
            "with a band of ±1 standard deviation.",
            "",
        ]
        lines += [f"![{key}]({PLOTS_DIR}/{plot_file(key)})" for key in plots]
        lines.append("")
    return "\n".join(lines)


def study_setting_name(study: Study, run: Run, names: dict) -> str:
    return setting_of(run, study.keys, names).name


def duplicate_seeds(study: Study) -> list[str]:
    notes = []
    for setting in study.settings:
        seen: dict[str, list[str]] = {}
        for run in study.members[setting.id]:
            seen.setdefault(run.seed_text, []).append(run.name)
        notes += [", ".join(names) for names in seen.values() if len(names) > 1]
    return notes


def csv_text(study: Study) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["setting", *study.keys, "seeds", "unfinished"]
    if study.baseline is not None:
        header.append("baseline")
    blocks = []
    for which in ("final", "best"):
        prefix = "" if which == "final" else "best/"
        for column in study.tables[which]:
            name = prefix + column.label
            header += [f"{name}_{part}" for part in ("mean", "std", "ci95_low", "ci95_high", "n")]
            if study.baseline is not None:
                header += [f"{name}_diff{part}" for part in ("", "_ci95_low", "_ci95_high", "_df")]
            header.append(f"{name}_protocol")
        blocks.append((which, summaries(study, which)))
    writer.writerow(header)
    for setting in study.settings:
        members = study.members[setting.id]
        row = [setting.name, *[display(value) for _, value in setting.values]]
        row += [
            str(sum(run.final is not None for run in members)),
            str(sum(run.final is None for run in members)),
        ]
        if study.baseline is not None:
            row.append("yes" if setting == study.baseline else "")
        for which, table in blocks:
            diffs = differences(study, which, table)
            for column in study.tables[which]:
                summary, _ = table[setting.id, column.label]
                if summary is None:
                    row += ["", "", "", "", "0"]
                else:
                    row += [*map(csv_number, (summary.mean, summary.std, summary.low))]
                    row += [csv_number(summary.high), str(summary.n)]
                if study.baseline is not None:
                    difference = diffs[setting.id, column.label]
                    if difference is None or setting == study.baseline:
                        row += ["", "", "", ""]
                    else:
                        row += [
                            csv_number(difference.difference),
                            csv_number(difference.low),
                            csv_number(difference.high),
                            csv_number(difference.df),
                        ]
                row.append(column.protocol_id)
        writer.writerow(row)
    return buffer.getvalue()


def plot_keys(runs: Sequence[Run]) -> list[str]:
    return sorted({key for run in runs for key in run.history})


def plot_file(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".png"


def plot_series(study: Study, key: str) -> list:
    from experiments import plots

    series = []
    for setting in study.settings:
        by_step: dict[int, list[float]] = {}
        for run in study.members[setting.id]:
            for step, value in run.history.get(key, {}).items():
                by_step.setdefault(step, []).append(value)
        if not by_step:
            continue
        steps = sorted(by_step)
        summaries_ = [stats.summarize(by_step[step]) for step in steps]
        low = tuple(None if s.std is None else s.mean - s.std for s in summaries_)
        high = tuple(None if s.std is None else s.mean + s.std for s in summaries_)
        series.append(
            plots.Series(
                setting.name,
                tuple(float(step) for step in steps),
                tuple(s.mean for s in summaries_),
                low,
                high,
            )
        )
    return series


def write_text(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def write(study: Study, plots_too: bool = True) -> list[Path]:
    """Writes report.md, report.csv and the plots; returns their paths."""
    from experiments import plots

    written = []
    for name, text in ((REPORT_MD, markdown(study)), (REPORT_CSV, csv_text(study))):
        path = study.root / name
        try:
            write_text(path, text)
        except OSError as error:
            raise ReportError(f"cannot write {path}: {error}") from error
        written.append(path)
    if plots_too:
        for key in plot_keys(study.runs):
            path = study.root / PLOTS_DIR / plot_file(key)
            try:
                plots.line_plot(
                    path, f"{key} (mean ± 1 std over seeds)", plot_series(study, key), "step"
                )
            except OSError as error:
                raise ReportError(f"cannot write {path}: {error}") from error
            written.append(path)
    return written


# --------------------------------------------------------------------------------------------
# Command


def main(argv) -> None:
    from absl import flags

    from experiments import cli

    if len(argv) != 2:
        extra = f" (got {' '.join(argv[1:])})" if len(argv) > 2 else ""
        cli.fail(f"expected one folder: python -m experiments.report DIR{extra}")
    root = Path(argv[1])
    if not root.is_dir():
        cli.fail(f"{root} is not a folder" if root.exists() else f"{root} does not exist")
    values = flags.FLAGS
    metrics = [name.strip() for name in values["metrics"].value.split(",") if name.strip()]
    try:
        study = gather(
            root,
            baseline=values["baseline"].value,
            metrics=metrics or None,
            split_protocols=values["split_protocols"].value,
        )
        written = write(study, plots_too=values["plots"].value)
    except ReportUsageError as error:
        cli.fail(str(error), status=2)
    except ReportError as error:
        cli.fail(str(error), status=1)
    finished = sum(run.final is not None for run in study.runs)
    print(
        f"{len(study.settings)} settings, {finished} of {len(study.runs) + len(study.missing)} "
        f"runs finished and evaluated; wrote {', '.join(str(p) for p in written[:2])}"
        + (f" and {len(written) - 2} plots" if len(written) > 2 else "")
    )


if __name__ == "__main__":
    from absl import app, flags

    from experiments import cli

    flags.DEFINE_string(
        "baseline",
        "",
        "The setting to compare with: its name, or KEY=VALUE,... of the keys that differ.",
    )
    flags.DEFINE_string("metrics", "", "Comma-separated metric keys to report ('' = all).")
    flags.DEFINE_bool(
        "split_protocols", False, "Report results under different protocols in separate columns."
    )
    flags.DEFINE_bool("plots", True, "Write plots/<eval key>.png from the runs' metrics.jsonl.")
    app.run(main, flags_parser=cli.parse_flags)
