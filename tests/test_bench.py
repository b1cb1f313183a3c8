"""``make bench``'s aggregator: rows, targets, the table, sections that are missing or broken, the JSON file."""

from __future__ import annotations

import json

import pytest

from train.bench import BenchRun, format_table, main, row, run_sections, summary, target_met


def _rows() -> list[dict]:
    return [{"section": "startup", "runs": 5, "name": "harken --help", "unit": "s", "min": 0.21, "median": 0.2345,
             "target": "<= 2"},
            {"section": "dpo", "name": "DPO step / SFT step", "unit": "x", "min": 1.41, "median": 1.62,
             "target": "<= 1.5"},
            {"section": "data", "name": "pairs built", "unit": "pairs/s", "min": 1234.4, "median": 4810.0,
             "target": ">= 1000"},
            {"section": "audio", "name": "encode", "unit": "ms", "min": 0.000123, "median": 12.345}]


def test_row_takes_min_and_median():
    assert row("x", "s", [3.0, 1.0, 2.0, 10.0], "< 5") == {"name": "x", "unit": "s", "min": 1.0, "median": 2.5,
                                                             "target": "< 5"}
    assert "target" not in row("x", "s", [1.0])
    with pytest.raises(ValueError, match="x: no measurement"):
        row("x", "s", [])


@pytest.mark.parametrize("target, median, met", [("<= 1.5", 1.5, True), ("<= 1.5", 1.51, False), ("< 1.5", 1.5, False),
                                                 (">= 100", 100.0, True), (">=100", 99.0, False), ("> 1e2", 101, True),
                                                 ("<= 1.5x", 1.4, True), ("< 2 s", 2.0, False),
                                                 ("<= 1.5 (goal 1.35)", 1.45, True), (None, 5.0, None)])
def test_target_is_judged_on_the_median(target, median, met):
    r = {"name": "x", "unit": "s", "min": 0.0, "median": median, **({"target": target} if target else {})}
    assert target_met(r) is met


@pytest.mark.parametrize("target", ["about 2", "<= two", "== 1", "<="])
def test_a_target_that_is_no_bound_is_refused_naming_the_row(target):
    with pytest.raises(ValueError, match="ratio: target"):
        target_met({"name": "ratio", "unit": "x", "min": 1.0, "median": 1.0, "target": target})


def test_table_is_aligned_with_targets_and_verdicts():
    assert format_table(_rows()).splitlines() == [
        "section  figure               runs       min  median  unit     target   met",
        "startup  harken --help           5      0.21   0.234  s        <= 2     yes",
        "dpo      DPO step / SFT step            1.41    1.62  x        <= 1.5   NO",
        "data     pairs built                    1234    4810  pairs/s  >= 1000  yes",
        "audio    encode                     1.23e-04    12.3  ms",
    ]
    assert summary(BenchRun(rows=_rows(), unavailable={"scoring": "not available: x"})).splitlines()[-2:] == [
        "scoring: not available: x", "a target is met when the median is on its side: 2 of 3 met"]


def test_missing_and_broken_sections_are_reported_and_the_others_run():
    seen = []
    res = run_sections(["ghost", "broken", "fingerprint"], 1, log=seen.append,
                       sections={"ghost": "harken_no_such_bench:bench", "broken": "math:sqrt",
                                 "fingerprint": "eval.bench_fingerprint:bench"})
    assert res.unavailable == {"ghost": "not available: harken_no_such_bench is not in this tree"}
    assert list(res.failed) == ["broken"] and res.failed["broken"].startswith("failed: TypeError")
    assert [r["name"] for r in res.rows] == ["fingerprint a 15 GB checkpoint",
                                             "hash every byte of 15 GB (before; from 1 GB)"]
    assert all(r["section"] == "fingerprint" and r["runs"] == 1 for r in res.rows)
    assert "[bench] ghost: not available: harken_no_such_bench is not in this tree" in seen


def test_rows_that_break_the_interface_fail_their_section(monkeypatch):
    import eval.bench_fingerprint as fp

    monkeypatch.setattr(fp, "bench", lambda runs: [{"name": "x", "unit": "s", "min": "fast", "median": 1.0}])
    res = run_sections(["fingerprint"], 1, log=lambda line: None)
    assert res.rows == [] and res.failed == {"fingerprint": "failed: ValueError: fingerprint: row 'x': 'min' "
                                                            "missing or not a number"}


def test_main_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--only", "fingerprint", "--runs", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "fingerprint a 15 GB checkpoint" in table and "<= 1" in table
    saved = json.loads(out.read_text())
    assert saved["runs"] == 2 and saved["failed"] == {} and len(saved["rows"]) == 2
    first = saved["rows"][0]
    assert first["section"] == "fingerprint" and first["met"] is (first["median"] <= 1)
    assert first["min"] <= first["median"]


def test_unknown_section_is_refused(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--only", "startup,warp"])
    assert done.value.code == 2 and "unknown section(s) warp" in capsys.readouterr().err
