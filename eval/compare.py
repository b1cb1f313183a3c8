"""``python -m eval compare runs/A runs/B ...``: one Table-2-shaped table across runs or checkpoints.

Rows are runs (their last checkpoint), checkpoints or single evaluations; columns are Sync, VGGSync, the Table 1
columns, Avg Gap, the spectrogram benchmark, each lmms-eval task and any other suite that reports an ``accuracy``.
Each cell has its value, 95% interval and n, and, from the second row on, the exact McNemar test against the first row on the items
both rows answered (paired by item). Written as Markdown, CSV and a PNG plot.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from eval.report import TABLE1
from eval.stats import mcnemar, wilson_pct
from eval.thud.records import PredictionRow, is_correct


@dataclass
class Cell:
    """One measurement of a row: value (%), interval, n, and per-item outcomes for the paired test."""

    value: float | None
    ci95: list[float] | None
    n: int
    outcomes: dict[str, bool] = field(default_factory=dict)
    note: str = ""


def resolve_results(target: str | Path) -> tuple[str, Path]:
    """(row label, results.json) of a results file, an eval folder, a checkpoint folder or a run folder (its last
    checkpoint in training order, else its base evaluation).

    Raises:
        FileNotFoundError: nothing evaluated there, with what to run.
    """
    from eval.runner import run_checkpoints, run_recipe_of

    p = Path(target)
    if p.is_file():
        return (p.parent.parent.name if p.parent.name == "eval" else p.parent.name), p
    if (p / "results.json").is_file():  # an eval folder: runs/NAME/eval/base, CHECKPOINT/eval, or any other
        if p.parent.name == "eval":
            return f"{p.parent.parent.name} ({p.name})", p / "results.json"
        return (f"{p.parent.parent.name}/{p.parent.name}" if p.name == "eval" else p.name), p / "results.json"
    if (p / "eval" / "results.json").is_file():  # a checkpoint folder
        return f"{p.parent.name}/{p.name}", p / "eval" / "results.json"
    if p.is_dir():
        for ck in reversed(run_checkpoints(p, run_recipe_of(p))):
            if (ck / "eval" / "results.json").is_file():
                return f"{p.name} ({ck.parent.name}/{ck.name})", ck / "eval" / "results.json"
        if (p / "eval" / "base" / "results.json").is_file():
            return f"{p.name} (base)", p / "eval" / "base" / "results.json"
    raise FileNotFoundError(f"{target}: no results.json there; evaluate first (python -m eval watch {target} --once "
                            "or python -m eval run --checkpoint ...)")


def _prediction_file(results_path: Path, recorded: str | None, name: str) -> Path | None:
    # Recorded paths may be relative to where the evaluation ran; the file also sits beside results.json.
    for cand in ([Path(recorded)] if recorded else []) + [results_path.parent / "thud" / name,
                                                          results_path.parent / name]:
        if cand.is_file():
            return cand
    return None


def _thud_rows(results_path: Path, thud: dict, key: str, name: str) -> list[PredictionRow]:
    f = _prediction_file(results_path, thud.get("predictions", {}).get(key), name)
    if f is None:
        return []
    return [PredictionRow.model_validate(json.loads(line)) for line in f.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _item(r: PredictionRow) -> str:
    return f"{getattr(r, 'item_id', None) or r.source_id}|{r.dimension}|{r.condition}|{r.offset}"


def _share(rows: Sequence[PredictionRow]) -> Cell:
    out = {_item(r): is_correct(r) for r in rows}
    k = sum(out.values())
    return Cell(100.0 * k / len(out) if out else None, wilson_pct(k, len(out)), len(out), out)


def _summary(d: dict | None) -> Cell:
    d = d or {}
    return Cell(d.get("value"), d.get("ci95"), d.get("n", 0))


def thud_cells(results_path: Path, thud: dict, mode: str) -> dict[str, Cell]:
    """Sync, VGGSync, Table 1 columns and Avg Gap of one evaluation; per-item outcomes from its predictions."""
    metrics = thud.get("metrics", {}).get(mode)
    if metrics is None:
        return {}
    rows = _thud_rows(results_path, thud, mode, f"predictions_{mode}.jsonl")
    sync_rows = [r for r in rows if r.dimension == "temporal_sync"]
    cells = {"Sync": _summary(metrics.get("sync"))}
    cells["Sync"].outcomes = {_item(r): is_correct(r) for r in sync_rows}
    vgg = thud.get("sync_set_sync", {}).get(mode)
    if vgg:
        cells["VGGSync"] = _summary(vgg)
        srows = _thud_rows(results_path, thud, f"sync_set_{mode}", f"sync_set_{mode}.jsonl")
        cells["VGGSync"].outcomes = {_item(r): is_correct(r) for r in srows}
    for header, dim, key in TABLE1:
        cond = "original" if key == "accuracy_original" else None
        cells[header] = _share([r for r in rows if r.dimension == dim and
                                (r.condition == "original") == (cond == "original")])
        if not rows:  # predictions moved away: the summary numbers still stand, without the paired test
            side = "original" if cond else "intervened"
            d = metrics.get(dim, {})
            cells[header] = Cell(d.get(key), d.get(f"ci95_{side}"), d.get(f"n_{side}", 0))
    cells["Avg Gap"] = _summary(metrics.get("avg_gap"))
    rel = thud.get("reliability", {}).get(mode)
    if rel and rel.get("unreliable"):
        for c in cells.values():
            c.note = "unreliable"
    return cells


def spectrogram_cell(results_path: Path, res: dict) -> Cell | None:
    """The spectrogram benchmark pooled over its four conditions (item x condition outcomes)."""
    f = results_path.parent / "spectrogram_mcq_predictions.jsonl"
    if f.is_file():
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        out = {f"{r['id']}|{r['condition']}": r["pred"] == r["answer"] for r in rows if r["section"] == "conditions"}
        k = sum(out.values())
        return Cell(100.0 * k / len(out) if out else None, wilson_pct(k, len(out)), len(out), out)
    conds = res.get("conditions", {})
    n = sum(c.get("n", 0) for c in conds.values())
    k = round(sum(c.get("accuracy", 0) * c.get("n", 0) for c in conds.values()))
    return Cell(100.0 * k / n, wilson_pct(k, n), n) if n else None


def other_cell(res: dict) -> Cell | None:
    """A general suite's headline: ``metrics.accuracy`` as a fraction or percent, or ``{value, n, ci95}``."""
    acc = res.get("metrics", {}).get("accuracy") if isinstance(res.get("metrics"), dict) else None
    if isinstance(acc, dict):
        return _summary(acc)
    if isinstance(acc, (int, float)):
        value = 100.0 * acc if acc <= 1 else float(acc)
        n = int(res.get("metrics", {}).get("n", 0))
        return Cell(value, wilson_pct(round(value * n / 100), n) if n else None, n)
    return None


def row_cells(results_path: Path, mode: str) -> dict[str, Cell]:
    """Every column this evaluation can fill."""
    res = json.loads(results_path.read_text(encoding="utf-8"))
    cells: dict[str, Cell] = {}
    for name, suite in res.get("suites", {}).items():
        if suite.get("status", "ok") != "ok":
            continue
        if name == "thud":
            cells.update(thud_cells(results_path, suite, mode))
        elif name == "spectrogram_mcq":
            c = spectrogram_cell(results_path, suite)
            if c:
                cells["Spectrogram MCQ"] = c
        elif name == "lmms_eval":
            from eval.general import compare_cells

            cells.update(compare_cells(suite))
        else:
            c = other_cell(suite)
            if c:
                cells[name] = c
    return cells


def _fmt(c: Cell | None, p: float | None) -> str:
    if c is None:
        return "—"
    if c.note:
        return c.note
    if c.value is None:
        return f"— (n={c.n})"
    ci = f" [{c.ci95[0]:.1f}, {c.ci95[1]:.1f}]" if c.ci95 else ""
    return f"{c.value:.1f}{ci} n={c.n}" + (f", p={p:.3g}" if p is not None else "")


def paired_p(ref: Cell | None, c: Cell | None) -> float | None:
    """McNemar p-value of ``c`` against ``ref`` on their shared items; None without shared items."""
    if ref is None or c is None or ref.note or c.note:
        return None
    shared = sorted(set(ref.outcomes) & set(c.outcomes))
    if not shared:
        return None
    return mcnemar([ref.outcomes[k] for k in shared], [c.outcomes[k] for k in shared])["p"]


COLUMN_ORDER = ["Sync", "VGGSync", *[h for h, _, _ in TABLE1], "Avg Gap", "Spectrogram MCQ"]


def compare(targets: Sequence[str | Path], out: str | Path, mode: str = "closed_set") -> dict[str, Path]:
    """Write ``out/compare.md``, ``out/compare.csv`` and ``out/compare.png``; returns their paths.

    Raises:
        FileNotFoundError: a target without results (see :func:`resolve_results`).
        ValueError: fewer than one target.
    """
    if not targets:
        raise ValueError("compare needs at least one run, checkpoint or results.json")
    rows = [(label, row_cells(path, mode)) for label, path in map(resolve_results, targets)]
    present = {k for _, cells in rows for k in cells}
    columns = [c for c in COLUMN_ORDER if c in present] + sorted(present - set(COLUMN_ORDER))
    ref = rows[0][1]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# Comparison ({mode}); reference row: {rows[0][0]}", "",
          "Each cell: % [95% interval] n; from the second row on, p = exact McNemar test against the first row on "
          "the items both answered. Sync and VGGSync are class-balanced (synced, delayed, early); Avg Gap is in "
          "points.", "",
          "| run | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run"] + [f"{c} {part}" for c in columns for part in ("value", "ci_low", "ci_high", "n", "p")])
    for i, (label, cells) in enumerate(rows):
        ps = {c: (paired_p(ref.get(c), cells.get(c)) if i else None) for c in columns}
        md.append(f"| {label} | " + " | ".join(_fmt(cells.get(c), ps[c]) for c in columns) + " |")
        line = [label]
        for c in columns:
            cell = cells.get(c)
            unusable = cell is None or bool(cell.note)
            line += ["" if unusable or cell.value is None else f"{cell.value:.2f}",
                     "" if unusable or not cell.ci95 else f"{cell.ci95[0]:.2f}",
                     "" if unusable or not cell.ci95 else f"{cell.ci95[1]:.2f}",
                     "" if cell is None else cell.n, "" if ps[c] is None else f"{ps[c]:.4g}"]
        w.writerow(line)
    paths = {"markdown": out / "compare.md", "csv": out / "compare.csv", "plot": out / "compare.png"}
    _atomic(paths["markdown"], lambda f: f.write_text("\n".join(md) + "\n", encoding="utf-8"))
    _atomic(paths["csv"], lambda f: f.write_text(buf.getvalue(), encoding="utf-8"))
    _atomic(paths["plot"], lambda f: _plot(rows, [c for c in columns if c != "Avg Gap"], f))
    return paths


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # keeps the suffix: matplotlib picks the format by it
    write(tmp)
    tmp.replace(path)


def _plot(rows: list[tuple[str, dict[str, Cell]]], columns: list[str], path: Path) -> None:
    """Grouped bars, one group per column and one bar per row, with 95% intervals as error bars."""
    from eval.thud.plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(columns) * max(1, len(rows)) ** 0.5), 3.6))
    width = 0.8 / max(1, len(rows))
    for i, (label, cells) in enumerate(rows):
        xs, vals, lo, hi = [], [], [], []
        for j, c in enumerate(columns):
            cell = cells.get(c)
            if cell is None or cell.value is None or cell.note:
                continue
            xs.append(j + (i - (len(rows) - 1) / 2) * width)
            vals.append(cell.value)
            # max(0, ...): an interval computed in floating point may end a hair inside a 0 % or 100 % value.
            lo.append(max(0.0, cell.value - cell.ci95[0]) if cell.ci95 else 0.0)
            hi.append(max(0.0, cell.ci95[1] - cell.value) if cell.ci95 else 0.0)
        ax.bar(xs, vals, width, yerr=[lo, hi], capsize=2, label=label)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% (95% interval)")
    ax.legend(fontsize=7)
    ax.set_title("Comparison (Table 2 layout)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
