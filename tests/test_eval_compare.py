"""``python -m eval compare``: a Table-2-shaped table across runs with intervals and McNemar against the first row,
read from real results.json / predictions layouts (a run folder's last checkpoint, a plain eval folder)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from eval.__main__ import main as eval_main
from eval.thud.metrics import compute_metrics

N = 12  # source clips; clip i is shifted by +1.0 s when i is even, -1.0 s when odd


def _rows(right_on_shift: int) -> list[dict]:
    """Always "synced" on originals and swaps, "silent" on mutes; right on the first ``right_on_shift`` shifts."""
    rows = []
    for i in range(N):
        sid, off = f"c{i}", (1.0 if i % 2 == 0 else -1.0)
        right = "delayed" if off > 0 else "early"
        rows += [
            {"source_id": sid, "item_id": f"{sid}|original", "dimension": "temporal_sync", "condition": "original",
             "label": "synced"},
            {"source_id": sid, "item_id": f"{sid}|shift", "dimension": "temporal_sync", "condition": "shift",
             "offset": off, "label": right if i < right_on_shift else "synced"},
            {"source_id": sid, "item_id": f"{sid}|original", "dimension": "audio_existence", "condition": "original",
             "label": "synced"},
            {"source_id": sid, "item_id": f"{sid}|mute", "dimension": "audio_existence", "condition": "mute",
             "label": "silent"},
            {"source_id": sid, "item_id": f"{sid}|original", "dimension": "sound_consistency",
             "condition": "original", "label": "synced"},
            {"source_id": sid, "item_id": f"{sid}|swap", "dimension": "sound_consistency", "condition": "swap",
             "label": "synced"},
        ]
    return rows


def _write_eval(folder: Path, rows: list[dict], spectro_right: int) -> None:
    (folder / "thud").mkdir(parents=True)
    pred = folder / "thud" / "predictions_closed_set.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = [{"id": f"w{i}", "section": "conditions", "condition": "graphemic/spectrogram", "pred": 0,
             "answer": 0 if i < spectro_right else 1, "ped": 0.0} for i in range(20)]
    (folder / "spectrogram_mcq_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in spec))
    res = {"checkpoint": str(folder), "settings": {}, "suites": {
        "thud": {"status": "ok", "metrics": {"closed_set": compute_metrics(rows)},
                 "predictions": {"closed_set": "moved/elsewhere.jsonl"}},
        "spectrogram_mcq": {"status": "ok", "conditions": {}},
        "general_qa": {"status": "ok", "metrics": {"accuracy": 0.5, "n": 40}}}}
    (folder / "results.json").write_text(json.dumps(res))


def test_compare_two_runs(tmp_path, capsys):
    base = tmp_path / "runs" / "base_eval"
    _write_eval(base, _rows(0), spectro_right=5)
    run = tmp_path / "runs" / "dpo_ctp"
    for step in (4, 8):  # the last checkpoint of the run is its row
        ck = run / "dpo" / f"checkpoint-{step}"
        ck.mkdir(parents=True)
        (ck / "trainer_state.json").write_text("{}")
    _write_eval(run / "dpo" / "checkpoint-4" / "eval", _rows(2), spectro_right=5)
    _write_eval(run / "dpo" / "checkpoint-8" / "eval", _rows(N), spectro_right=15)
    out = tmp_path / "cmp"
    assert eval_main(["compare", str(base), str(run), "--out", str(out)]) == 0
    md = (out / "compare.md").read_text()
    assert "| run | Sync | Sync orig | Shift | Exist orig | Mute | Consist orig | Swap | Avg Gap | Spectrogram MCQ " \
           "| general_qa |" in md
    lines = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "dpo_ctp (dpo/checkpoint-8)" in lines
    with (out / "compare.csv").open() as fh:
        table = {r["run"]: r for r in csv.DictReader(fh)}
    ref, new = table["base_eval"], table["dpo_ctp (dpo/checkpoint-8)"]
    # Always synced: Sync = (100 + 0 + 0) / 3; all shifts right: 100.
    assert float(ref["Sync value"]) == pytest.approx(100 / 3, abs=0.01) and float(new["Sync value"]) == 100.0
    assert ref["Sync p"] == "" and int(new["Sync n"]) == 2 * N
    # The 12 shift items are the only discordant pairs: exact two-sided p = 2 / 2^12.
    assert float(new["Shift p"]) == pytest.approx(2 / 2 ** 12, rel=1e-3)
    assert float(new["Sync orig p"]) == 1.0
    assert float(ref["Shift ci_low"]) == 0.0 and 0 < float(ref["Shift ci_high"]) < 30
    # Spectrogram MCQ pooled per item: 5/20 vs 15/20, 10 discordant pairs all one way.
    assert float(ref["Spectrogram MCQ value"]) == 25.0 and float(new["Spectrogram MCQ value"]) == 75.0
    assert float(new["Spectrogram MCQ p"]) == pytest.approx(2 / 2 ** 10, rel=1e-3)
    assert float(new["general_qa value"]) == 50.0 and new["general_qa p"] == ""  # no per-item outcomes
    assert float(new["Avg Gap value"]) == pytest.approx((0 + 0 + 100) / 3, abs=0.01)
    assert (out / "compare.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out
    assert eval_main(["compare", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
