"""Report sections of the diagnostic suites: ``audio_mcq``, ``caption_classification`` and ``hierarchy``.
Numbers are read from results.json; nothing is recomputed here."""

from __future__ import annotations

from pathlib import Path


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _acc(m: dict) -> str:
    if not m or not m.get("n"):
        return "—"
    lo, hi = m["ci95"]
    return f"{100 * m['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] (n={m['n']})"


def audio_mcq_lines(res: dict, out_dir: Path) -> list[str]:
    """Accuracy with full audio; the input-condition section follows when it was asked for."""
    lines = ["## audio_mcq", "", f"Questions of `{res['settings']['items']}`: accuracy % with full audio "
             f"{_acc(res['accuracy'])}; 95 % interval in brackets."]
    if res.get("quarantined"):
        lines.append(f"{len(res['quarantined'])} line(s) quarantined, first: {res['quarantined'][0]['reason']}")
    return lines + [""]


def caption_lines(res: dict, out_dir: Path) -> list[str]:
    """mAP, macro AUC, accuracy and F1 per label set (in- and out-of-distribution apart)."""
    from eval.report import _md_table

    s = res["settings"]
    lines = ["## caption_classification", "",
             f"The model captions each clip; caption and labels, prefixed \"{s['prefix']}\", are compared by cosine "
             f"similarity in `{s['embedder']}` (\"What do MLLMs hear?\"). Percent; n = clips of the set.", ""]
    rows = [[name, str(m["n_clips"]), str(m["n_labels"]), _pct(m["mAP"]), _pct(m["macro_auc"]), _pct(m["accuracy"]),
             _pct(m["f1"])] for name, m in res["label_sets"].items()]
    lines += _md_table(["label set", "n", "labels", "mAP", "macro AUC", "accuracy", "F1"], rows) + [""]
    return lines


def hierarchy_lines(res: dict, out_dir: Path) -> list[str]:
    """Accuracy per relation (rows) and probe (columns)."""
    from eval.report import _md_table

    probes = res["settings"]["probes"]
    lines = ["## hierarchy", "", "Is concept A the same as / a kind of concept B, with each concept read (text) or "
             "heard (clip)? Accuracy %, 95 % interval, n (\"What do MLLMs hear?\").", ""]
    rows = [[rel, *[_acc(per.get(p, {})) for p in probes]] for rel, per in res["accuracy"].items()]
    lines += _md_table(["relation", *probes], rows) + [""]
    if res.get("skipped"):
        lines += [f"{len(res['skipped'])} probe(s) skipped for lack of clips, first: {res['skipped'][0]['reason']}",
                  ""]
    return lines


SECTIONS = {"audio_mcq": audio_mcq_lines, "caption_classification": caption_lines, "hierarchy": hierarchy_lines}
