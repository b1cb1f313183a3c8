"""Thud metrics on hand-built prediction sets with known answers ("When Vision Speaks for Sound", Table 1 and
Figures 3-5), and against an independent reference implementation written here from the metric definitions
(docs/metrics.md) on random prediction sets."""

from __future__ import annotations

import json
import random

import pytest

from eval.__main__ import main as eval_main
from eval.thud.metrics import band_of, compute_metrics

DIM_COND = {"temporal_sync": "shift", "audio_existence": "mute", "sound_consistency": "swap"}
RIGHT = {("temporal_sync", "original"): "synced", ("audio_existence", "original"): "synced",
         ("sound_consistency", "original"): "synced", ("audio_existence", "mute"): "silent",
         ("sound_consistency", "swap"): "mismatched"}
WRONG = {("temporal_sync", "original"): "delayed", ("audio_existence", "original"): "silent",
         ("sound_consistency", "original"): "mismatched", ("audio_existence", "mute"): "synced",
         ("sound_consistency", "swap"): "synced"}


def _no_ci(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "ci95"}


def _row(sid, dim, cond, label, offset=None, pred=None):
    return {"source_id": sid, "dimension": dim, "condition": cond, "offset": offset, "label": label,
            "predicted_offset": pred}


def model_with_accuracies(acc: dict[str, tuple[float, float]], n: int = 1000) -> list[dict]:
    """Rows for n clips per dimension whose original / intervened accuracies are exactly the given percentages."""
    rows = []
    for dim, (a_o, a_i) in acc.items():
        k_o, k_i = round(a_o * n / 100), round(a_i * n / 100)
        for i in range(n):
            sid = f"{dim}_{i}"
            rows.append(_row(sid, dim, "original", (RIGHT if i < k_o else WRONG)[(dim, "original")]))
            if dim == "temporal_sync":
                rows.append(_row(sid, dim, "shift", "delayed" if i < k_i else "synced", offset=2.0))
            else:
                cond = DIM_COND[dim]
                rows.append(_row(sid, dim, cond, (RIGHT if i < k_i else WRONG)[(dim, cond)]))
    return rows


def test_table1_avg_gap_gemini_and_minicpm():
    # Gemini's per-dimension gaps are 8.4, 86.6 and 75.3 (the paper's Table 1): (8.4 + 86.6 + 75.3) / 3 = 56.8.
    gemini = compute_metrics(model_with_accuracies({"temporal_sync": (90.0, 81.6), "audio_existence": (100.0, 13.4),
                                                    "sound_consistency": (95.0, 19.7)}))
    assert gemini["temporal_sync"]["accuracy_original"] - gemini["temporal_sync"]["accuracy_intervened"] == \
        pytest.approx(8.4)
    assert round(gemini["avg_gap"]["value"], 1) == 56.8
    assert gemini["avg_gap"]["n"] == 3
    # MiniCPM-o 80.7 from gaps 70.0, 90.0, 82.1.
    minicpm = compute_metrics(model_with_accuracies({"temporal_sync": (75.0, 5.0), "audio_existence": (98.0, 8.0),
                                                     "sound_consistency": (90.0, 7.9)}))
    assert round(minicpm["avg_gap"]["value"], 1) == 80.7


def test_always_synced_model():
    rows = []
    for i in range(7):
        sid = f"c{i}"
        for dim, cond in DIM_COND.items():
            rows.append(_row(sid, dim, "original", "synced"))
            rows.append(_row(sid, dim, cond, "synced", offset=(1.0 if i % 2 else -0.4) if cond == "shift" else None))
    m = compute_metrics(rows)
    assert m["temporal_sync"]["accuracy_original"] == 100.0
    assert m["temporal_sync"]["accuracy_intervened"] == 0.0
    assert m["temporal_sync"]["pair_accuracy"] == 0.0
    assert m["temporal_sync"]["n"] == 7
    # Table 1's Qwen3-Omni pattern: Mute 0.0, and every muted clip is a hallucinated sound.
    assert m["audio_existence"]["accuracy_intervened"] == 0.0
    assert m["axes"]["mute_hallucination"]["value"] == 100.0
    assert m["axes"]["shift_miss"]["value"] == 100.0
    assert m["axes"]["direction_error"]["n"] == 0 and m["axes"]["direction_error"]["value"] is None
    assert m["decomposition"]["mute"]["hallucinated_synced"] == 100.0
    assert m["bands"]["synced"]["accuracy"] == 100.0
    assert all(m["bands"][b]["accuracy"] in (0.0, None) for b in m["bands"] if b != "synced")
    assert m["avg_gap"]["value"] == 100.0


def test_undetermined_is_wrong_and_reported():
    rows = [_row("a", "temporal_sync", "original", "undetermined"), _row("a", "temporal_sync", "shift",
                                                                        "undetermined", offset=1.0),
            _row("b", "temporal_sync", "original", "synced"), _row("b", "temporal_sync", "shift", "early",
                                                                   offset=-0.3),
            _row("a", "audio_existence", "original", "undetermined"), _row("a", "audio_existence", "mute", "silent")]
    m = compute_metrics(rows)
    assert m["temporal_sync"]["accuracy_original"] == 50.0
    assert m["temporal_sync"]["pair_accuracy"] == 50.0
    assert m["audio_existence"]["accuracy_original"] == 0.0  # undetermined is not "sound present"
    assert m["decomposition"]["shift"]["other"] == 50.0
    assert m["undetermined_rate"]["original"] == {
        "value": pytest.approx(200 / 3), "n": 3,
        "ci95": [pytest.approx(20.766, abs=1e-3), pytest.approx(93.851, abs=1e-3)]}
    assert m["undetermined_rate"]["shift"]["value"] == 50.0
    assert m["undetermined_rate"]["all"]["value"] == 50.0


def test_decomposition_axes_bands_offset_error():
    rows = [
        _row("a", "temporal_sync", "original", "synced"),
        _row("a", "temporal_sync", "shift", "delayed", offset=2.5, pred=2.0),   # correct, error 0.5
        _row("b", "temporal_sync", "original", "early"),                         # false shift
        _row("b", "temporal_sync", "shift", "delayed", offset=-0.8, pred=2.0),  # wrong direction, error 1.2
        _row("c", "temporal_sync", "original", "synced"),
        _row("c", "temporal_sync", "shift", "synced", offset=1.5),              # missed
        _row("d", "temporal_sync", "original", "silent"),                        # other
        _row("d", "temporal_sync", "shift", "early", offset=-0.2),              # correct, no number
        _row("a", "sound_consistency", "original", "mismatched"),
        _row("a", "sound_consistency", "swap", "delayed"),
        _row("b", "sound_consistency", "original", "synced"),
        _row("b", "sound_consistency", "swap", "mismatched"),
    ]
    m = compute_metrics(rows)
    d = m["decomposition"]["shift"]
    assert d["n"] == 8
    assert d["correct_synced"] == 25.0 and d["correct_shift"] == 25.0 and d["wrong_direction"] == 12.5
    assert d["missed_shift"] == 12.5 and d["false_shift"] == 12.5 and d["other"] == 12.5
    assert sum(v for k, v in d.items() if k != "n") == pytest.approx(100.0)
    assert m["axes"]["direction_error"] == {"value": pytest.approx(100 / 3), "n": 3,
                                            "ci95": [pytest.approx(6.149, abs=1e-3), pytest.approx(79.234, abs=1e-3)]}
    assert _no_ci(m["axes"]["shift_miss"]) == {"value": 25.0, "n": 4}
    assert _no_ci(m["axes"]["swap_false_match"]) == {"value": 50.0, "n": 2}
    assert _no_ci(m["axes"]["swap_false_mismatch"]) == {"value": 50.0, "n": 2}
    assert m["decomposition"]["swap"]["hallucinated_shift"] == 50.0
    assert _no_ci(m["bands"]["(0, 0.5]"]) == {"accuracy": 100.0, "n": 1}
    assert _no_ci(m["bands"]["(0.5, 1]"]) == {"accuracy": 0.0, "n": 1}
    assert _no_ci(m["bands"]["(1, 2]"]) == {"accuracy": 0.0, "n": 1}
    assert _no_ci(m["bands"]["(2, inf)"]) == {"accuracy": 100.0, "n": 1}
    assert _no_ci(m["bands"]["synced"]) == {"accuracy": 50.0, "n": 4}
    oe = m["offset_error"]
    assert oe["n"] == 2 and oe["mean"] == pytest.approx(0.85) and oe["median"] == pytest.approx(0.85)
    assert oe["within_0_5"] == 50.0 and oe["within_1_0"] == 50.0
    assert m["temporal_sync"]["pair_accuracy"] == 25.0  # only clip a
    assert m["sound_consistency"]["pair_accuracy"] == 50.0  # only clip b


def test_band_edges_are_configurable():
    assert band_of(0.5) == "(0, 0.5]" and band_of(0.51) == "(0.5, 1]" and band_of(-3) == "(2, inf)"
    assert band_of(None) == "synced"
    m = compute_metrics([_row("a", "temporal_sync", "shift", "delayed", offset=1.5)], band_edges=[1.0])
    assert list(m["bands"]) == ["synced", "(0, 1]", "(1, inf)"] and m["bands"]["(1, inf)"]["n"] == 1


def test_bad_rows_are_refused():
    with pytest.raises(ValueError):
        compute_metrics([_row("a", "temporal_sync", "mute", "silent")])
    with pytest.raises(ValueError):
        compute_metrics([_row("a", "temporal_sync", "shift", "delayed")])  # a shift needs its offset


# ---- an independent reading of the metric definitions (docs/metrics.md), written without the library's helpers ---
def _reference(rows):
    def ok(r):
        d, c, lab = r["dimension"], r["condition"], r["label"]
        if d == "temporal_sync":
            return lab == "synced" if c == "original" else lab == ("delayed" if r["offset"] > 0 else "early")
        if d == "audio_existence":
            return lab not in ("silent", "undetermined") if c == "original" else lab == "silent"
        return lab in ("synced", "delayed", "early") if c == "original" else lab == "mismatched"

    out, gaps = {}, []
    for d, c in DIM_COND.items():
        o = [r for r in rows if r["dimension"] == d and r["condition"] == "original"]
        i = [r for r in rows if r["dimension"] == d and r["condition"] == c]
        ao, ai = 100 * sum(map(ok, o)) / len(o), 100 * sum(map(ok, i)) / len(i)
        clips = {r["source_id"] for r in o} & {r["source_id"] for r in i}
        both = sum(all(ok(r) for r in o + i if r["source_id"] == s) for s in clips)
        out[d] = (ao, ai, 100 * both / len(clips))
        gaps.append(ao - ai)
    muted = [r for r in rows if r["condition"] == "mute"]
    out["mute_hallucination"] = 100 * sum(r["label"] in ("synced", "delayed", "early", "mismatched")
                                          for r in muted) / len(muted)
    out["avg_gap"] = sum(gaps) / 3
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_independent_reference(seed, tmp_path, capsys):
    rng = random.Random(seed)
    labels = ["synced", "delayed", "early", "silent", "mismatched", "undetermined"]
    rows = []
    for i in range(60):
        for d, c in DIM_COND.items():
            rows.append(_row(f"s{i}", d, "original", rng.choice(labels)))
            off = rng.choice([-2.5, -1.2, -0.7, -0.2, 0.3, 0.9, 1.7, 2.4]) if c == "shift" else None
            rows.append(_row(f"s{i}", d, c, rng.choice(labels), offset=off))
    ref = _reference(rows)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert eval_main(["metrics", "thud", str(path)]) == 0  # the CLI, from predictions alone
    got = json.loads(capsys.readouterr().out)
    for d in DIM_COND:
        assert (got[d]["accuracy_original"], got[d]["accuracy_intervened"], got[d]["pair_accuracy"]) == \
            pytest.approx(ref[d])
        assert got[d]["n"] == 60
    assert got["avg_gap"]["value"] == pytest.approx(ref["avg_gap"])
    assert got["axes"]["mute_hallucination"]["value"] == pytest.approx(ref["mute_hallucination"])
