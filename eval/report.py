"""``report.md`` for one checkpoint (Table-1-style table and Figure 3-5 plots) and for a whole run (a row per
checkpoint and a before/after comparison). Numbers are read from results.json; nothing is recomputed here."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

# Table 1 columns of "When Vision Speaks for Sound": (header, dimension, key).
TABLE1 = [("Sync orig", "temporal_sync", "accuracy_original"), ("Shift", "temporal_sync", "accuracy_intervened"),
          ("Exist orig", "audio_existence", "accuracy_original"), ("Mute", "audio_existence", "accuracy_intervened"),
          ("Consist orig", "sound_consistency", "accuracy_original"),
          ("Swap", "sound_consistency", "accuracy_intervened")]
PAIRS = [("Sync pair", "temporal_sync"), ("Exist pair", "audio_existence"), ("Consist pair", "sound_consistency")]


def _f(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def table1_cells(m: dict, unreliable: bool = False) -> list[str]:
    """Table 1 row cells (Table 2's Sync, accuracies, Avg Gap, pair accuracies, undetermined %) of one metrics
    dict; ``unreliable`` shows that word instead of every number but the undetermined rate that explains it."""
    cells = [_f(m.get("sync", {}).get("value"))]
    cells += [_f(m.get(dim, {}).get(key)) for _, dim, key in TABLE1]
    cells.append(_f(m.get("avg_gap", {}).get("value")))
    cells += [_f(m.get(dim, {}).get("pair_accuracy")) for _, dim in PAIRS]
    cells.append(_f(m.get("undetermined_rate", {}).get("all", {}).get("value")))
    return ["unreliable"] * (len(cells) - 1) + cells[-1:] if unreliable else cells


TABLE1_HEADER = ["Sync"] + [h for h, _, _ in TABLE1] + ["Avg Gap"] + [h for h, _ in PAIRS] + ["Undet."]


def _ci(v: dict | None, value_key: str = "value", ci_key: str = "ci95", n_key: str = "n") -> list[str]:
    """[value, 95% CI, n] cells of one measurement."""
    v = v or {}
    ci = v.get(ci_key)
    return [_f(v.get(value_key)), "—" if not ci else f"{ci[0]:.1f}–{ci[1]:.1f}", str(v.get(n_key, 0))]


def interval_rows(m: dict) -> list[list[str]]:
    """Every Thud accuracy of one metrics dict as [metric, value, 95% CI, n] rows (Wilson intervals; Sync and
    Avg Gap combine their parts' uncertainty)."""
    rows = [["Sync (class-balanced)", *_ci(m.get("sync"))]]
    rows += [[f"  Sync / {c}", *_ci(v)] for c, v in m.get("sync", {}).get("classes", {}).items()]
    for header, dim, key in TABLE1:
        d = m.get(dim)
        if d:
            side = "original" if key == "accuracy_original" else "intervened"
            rows.append([header, *_ci(d, key, f"ci95_{side}", f"n_{side}")])
    rows.append(["Avg Gap", *_ci(m.get("avg_gap"))[:2], f"{m.get('avg_gap', {}).get('n', 0)} dimensions"])
    for header, dim in PAIRS:
        if dim in m:
            rows.append([header, *_ci(m[dim], "pair_accuracy", "ci95_pair")])
    rows += [[f"band {b}", *_ci(v, "accuracy")] for b, v in m.get("bands", {}).items()]
    rows += [[f"axis {k}", *_ci(v)] for k, v in m.get("axes", {}).items()]
    rows += [[f"undetermined {k}", *_ci(v)] for k, v in m.get("undetermined_rate", {}).items()]
    return rows


def unreliable_note(res: dict, mode: str) -> str | None:
    """Why a mode's numbers are not results (free form: too many answers undetermined and no judge), or None."""
    rel = res.get("reliability", {}).get(mode)
    if not rel or not rel.get("unreliable"):
        return None
    return (f"**unreliable**: {rel['undetermined_pct']:.0f}% of free-form answers could not be labelled and no judge "
            "ran; the zeros below are unread answers, not measured failures. Configure a judge (thud option "
            "`judge`) or read the closed-set table.")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _thud_section(res: dict, out_dir: Path) -> list[str]:
    from eval.thud.plots import plot_all

    lines = ["## Thud", ""]
    metrics = res.get("metrics", {})
    if metrics:
        lines += ["Accuracy % (Table 1 layout); pair = original and intervened both right; n = source clips.", ""]
        rows = [[mode, *table1_cells(m, unreliable=bool(unreliable_note(res, mode)))] for mode, m in metrics.items()]
        lines += _md_table(["mode", *TABLE1_HEADER], rows) + [""]
        for mode in metrics:
            note = unreliable_note(res, mode)
            lines += [f"- {mode}: {note}", ""] if note else []
        plan = res.get("item_plan")
        if plan:
            lines += [f"Items: {plan['items']}; shifts per offset {plan['shift_offsets']}; dropped (clip too short "
                      f"for any shift inside the margin, or no swap donor of another sound category): "
                      f"{plan['dropped']}.", ""]
        if res.get("judge"):
            j = res["judge"]
            lines += [f"Judge ({j.get('by')}) labelled {j['judged']} free-form answers; the parser agreed on "
                      f"{j['agreement']['value']:.1f}% (95% CI {j['agreement']['ci95'][0]:.1f}–"
                      f"{j['agreement']['ci95'][1]:.1f}, n={j['agreement']['n']}).", ""]
        for mode, m in metrics.items():
            lines += [f"#### {mode}: every accuracy with its 95% interval", ""]
            lines += _md_table(["metric", "%", "95% CI", "n"], interval_rows(m)) + [""]
        for mode, m in metrics.items():
            n = ", ".join(f"{d}: {m[d]['n']}" for d in ("temporal_sync", "audio_existence", "sound_consistency")
                          if d in m)
            lines.append(f"- {mode}: n {n}; labelled by {res.get('labelled_by', {}).get(mode, {})}; offset error "
                         f"{m['offset_error']}")
        lines.append("")
        for mode, m in metrics.items():
            figs = plot_all(m, out_dir / "figures", f"thud_{mode}")
            lines += [f"### {mode}", ""] + [f"![{k}]({p.relative_to(out_dir).as_posix()})" for k, p in figs.items()]
            lines.append("")
    if res.get("sync_set"):
        lines += ["### Out-of-distribution sync set (temporal_sync accuracy % per band)", ""]
        for mode, bands in res["sync_set"].items():
            lines += _md_table(["mode", *bands], [[mode, *[f"{_f(b['accuracy'])} (n={b['n']})"
                                                           for b in bands.values()]]]) + [""]
            vgg = res.get("sync_set_sync", {}).get(mode)
            if vgg:
                value, ci, n = _ci(vgg)
                lines += [f"- {mode}: VGGSync (class-balanced, as Sync) {value} (95% CI {ci}, n={n})", ""]
    return lines


def _pct(m: dict | None) -> str:
    return "—" if not m or m.get("accuracy") is None else f"{100 * m['accuracy']:.1f}"


def _frac_ci(m: dict | None) -> str:
    ci = (m or {}).get("ci95")
    return "—" if not ci else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


def _reference_cell(ref: dict | None, condition: str) -> str:
    """A reference row's accuracy for one condition: measured (with n and interval) or the published figure."""
    if not ref:
        return "—"
    if ref.get("published"):
        return f"{100 * ref['accuracy']:.1f} (published)"
    m = ref.get("conditions", {}).get(condition, ref) if "conditions" in ref else ref
    return "—" if m.get("n") in (None, 0) else f"{_pct(m)} ({_frac_ci(m)}, n={m['n']})"


def spectrogram_reference_rows(res: dict) -> list[list[str]]:
    """Per condition: the model's accuracy with interval, chance, the ASR and the human reference."""
    refs = res.get("references", {})
    chance = f"{100 * res.get('chance', 0.25):.0f}"
    return [[name, f"{_pct(m)} ({_frac_ci(m)}, n={m.get('n')})", chance, _reference_cell(refs.get("asr"), name),
             _reference_cell(refs.get("human"), name)] for name, m in res.get("conditions", {}).items()]


REFERENCE_HEADER = ["condition", "model (95% CI, n)", "chance", "ASR", "human"]


def _spectrogram_section(res: dict) -> list[str]:
    """Per condition the model against chance, ASR and people; then accuracy % with n and 95% interval, and mean
    PED of the selected option vs a random pick, per condition and ablation; then the text-only baselines (all
    should sit near chance, 25%)."""
    rows = []
    for section in ("conditions", "ablations"):
        for name, m in res.get(section, {}).items():
            rows.append([section[:-1], name, _pct(m), str(m.get("n")), _frac_ci(m), f"{m.get('mean_ped_selected', 0):.2f}",
                         f"{m.get('mean_ped_random', 0):.2f}"])
    lines = ["## spectrogram_mcq", "",
             "Accuracy % per condition against chance and the reference rows (ASR: a speech recogniser's transcript "
             "matched to the nearest option; human: people's answers). \"published\" = the figure of \"Seeing "
             "isn't Hearing\", shown until measured here.", ""]
    lines += _md_table(REFERENCE_HEADER, spectrogram_reference_rows(res)) + [""]
    skipped = res.get("references", {}).get("human", {}).get("n_skipped")
    if skipped:
        lines += [f"Human answers: {skipped} rows skipped (see results.json, references.human.skipped).", ""]
    lines += [f"Accuracy %; chance {100 * res.get('chance', 0.25):.0f}%. PED = phonemic edit distance from the answer "
              "(0 when right): an informed error sits below a random pick's.", ""]
    lines += _md_table(["kind", "condition", "accuracy", "n", "95% CI", "PED selected", "PED random"], rows) + [""]
    base = res.get("baselines", {})
    if base:
        lines += ["Text-only baselines (options alone, no image), accuracy %:", ""]
        lines += _md_table(["baseline", "accuracy", "n"], [[k, _pct(v), str(v.get("n"))] for k, v in base.items()
                                                          if isinstance(v, dict)]) + [""]
    return lines


def diagnostic_sections() -> dict:
    """Report sections of the diagnostic suites (audio_mcq, caption_classification, hierarchy): name -> lines."""
    from eval.diagnostics_report import SECTIONS

    return SECTIONS
def _spectrogram_epochs(run_dir: Path, done: Sequence[tuple[str, dict, str]]) -> list[str]:
    """The accuracy-against-epoch figure of a finetuning run and the last checkpoint's reference table."""
    from eval.spectrogram_plots import checkpoint_epoch, plot_epochs

    points = [(e, res) for _, res, ck in done if (e := checkpoint_epoch(ck)) is not None]
    lines = []
    fig = plot_epochs(points, run_dir / "figures" / "spectrogram_mcq_epochs.png")
    if fig is not None:
        lines += [f"![accuracy against finetuning epoch]({fig.relative_to(run_dir).as_posix()})", ""]
    label, last, _ = done[-1]
    lines += [f"### {label} against chance and the reference rows", ""]
    lines += _md_table(REFERENCE_HEADER, spectrogram_reference_rows(last)) + [""]
    return lines


def write_report(results: dict, out_dir: str | Path) -> Path:
    """Write ``out_dir/report.md`` (and its figures) for one checkpoint's results.json content."""
    import json

    out_dir = Path(out_dir)
    lines = [f"# Evaluation of `{results['checkpoint']}`", "",
             f"fingerprint `{results['settings'].get('fingerprint')}`, seed {results['settings'].get('seed')}, "
             f"media `{json.dumps(results['settings'].get('media'))}`", ""]
    for name, res in results["suites"].items():
        status = res.get("status", "ok")
        if status != "ok":
            lines += [f"## {name}", "", f"**{status}**: {res.get('reason', '')}", ""]
        elif name == "thud":
            lines += _thud_section(res, out_dir)
        elif name == "spectrogram_mcq":
            lines += _spectrogram_section(res)
        elif name in diagnostic_sections():
            lines += diagnostic_sections()[name](res, out_dir)
        elif name == "lmms_eval":
            from eval.general import report_lines as general_lines

            lines += general_lines(res)
        else:
            lines += [f"## {name}", "", "```json", json.dumps(res.get("metrics", res), indent=1)[:4000], "```", ""]
        if status == "ok" and res.get("input_conditions"):
            from eval.reliance import report_lines

            lines += report_lines(name, res["input_conditions"], out_dir)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_run_report(run_dir: str | Path, entries: Sequence[tuple[str, dict]]) -> Path:
    """``run_dir/report.md``: a Table-1 row per evaluated checkpoint (per Thud mode) and a comparison of the first
    (the base backbone when evaluated, as step 0) and the last checkpoint.

    Args:
        entries: (label, results.json content) in training order.
    """
    from eval.curves import curves_section

    run_dir = Path(run_dir)
    lines = [f"# Run `{run_dir.name}`: evaluation across checkpoints", ""]
    lines += curves_section(run_dir, entries)
    modes = sorted({mode for _, r in entries for mode in r["suites"].get("thud", {}).get("metrics", {})})
    for mode in modes:
        flagged = [label for label, r in entries if unreliable_note(r["suites"].get("thud", {}), mode)]
        rows = [[label, *table1_cells(r["suites"]["thud"]["metrics"][mode], unreliable=label in flagged)]
                for label, r in entries if mode in r["suites"].get("thud", {}).get("metrics", {})]
        lines += [f"## Thud, {mode}", ""]
        if flagged:
            lines += [f"Unreliable (at least 20% of answers undetermined and no judge; the numbers would be unread "
                      f"answers, not measured failures): {', '.join(flagged)}.", ""]
        lines += _md_table(["checkpoint", *TABLE1_HEADER], rows) + [""]
        if len(rows) >= 2:
            first, last = rows[0], rows[-1]

            def delta(a: str, b: str) -> str:
                return "—" if "—" in (a, b) or "unreliable" in (a, b) else f"{float(b) - float(a):+.1f}"

            lines += [f"### {first[0]} → {last[0]}", ""]
            lines += _md_table(["metric", first[0], last[0], "change"],
                               [[h, a, b, delta(a, b)] for h, a, b in zip(TABLE1_HEADER, first[1:], last[1:])])
            lines.append("")
    sync = [(label, r["suites"]["thud"]["sync_set"]) for label, r in entries if r["suites"].get("thud", {}).get("sync_set")]
    for mode in sorted({m for _, s in sync for m in s}):
        bands = list(dict.fromkeys(b for _, s in sync for b in s.get(mode, {})))
        rows = [[label, *[_f(s[mode].get(b, {}).get("accuracy")) for b in bands]] for label, s in sync if mode in s]
        lines += [f"## Out-of-distribution sync set, {mode} (accuracy % per band)", ""]
        lines += _md_table(["checkpoint", *bands], rows) + [""]
    spec = [(label, r["suites"]["spectrogram_mcq"], r.get("checkpoint", "")) for label, r in entries
            if "spectrogram_mcq" in r["suites"]]
    done = [(label, res, ck) for label, res, ck in spec if res.get("status", "ok") == "ok"]
    failed = [(label, res) for label, res, _ in spec if res.get("status", "ok") != "ok"]
    if done:
        cols = list(dict.fromkeys((sec, c) for _, res, _ in done for sec in ("conditions", "ablations")
                                  for c in res.get(sec, {})))
        rows = [[label, *[_pct(res.get(sec, {}).get(c)) for sec, c in cols]] for label, res, _ in done]
        lines += ["## spectrogram_mcq (accuracy %, chance 25%)", ""]
        lines += _md_table(["checkpoint", *[c for _, c in cols]], rows) + [""]
        lines += _spectrogram_epochs(run_dir, done)
    if failed:
        lines += ["## spectrogram_mcq, not evaluated", ""]
        lines += [f"- {label}: {res.get('status')}: {res.get('reason', '')}" for label, res in failed] + [""]
    from eval.reliance import run_report_lines

    lines += run_report_lines(entries)
    others = sorted({n for _, r in entries for n in r["suites"] if n not in ("thud", "spectrogram_mcq")})
    for name in others:
        lines += [f"## {name}", ""]
        for label, r in entries:
            res = r["suites"].get(name, {})
            status = res.get("status", "ok")
            summary = status if status != "ok" else _flat(res.get("metrics", {}))
            lines.append(f"- {label}: {summary}")
        lines.append("")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _flat(metrics: dict, limit: int = 8) -> str:
    items = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float))][:limit]
    return ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in items) or "(see results.json)"
