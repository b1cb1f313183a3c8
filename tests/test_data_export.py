"""Export to LLaMA-Factory sharegpt: the files parse back, and every wav holds its row's intervened audio."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from data_builders.build import build, load_built, record_from_row
from data_builders.export import export_llamafactory, read_export
from data_builders.interventions import intervened_audio


def test_export_parses_back_with_the_intervened_audio(tmp_path, synth_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"# Run: python -m data_builders build {recipe}\ndata:\n"
                      f"  annotations: [{synth_dir / 'annotations.jsonl'}]\n  shift: {{bands: [[0.3, 0.6]]}}\n"
                      "  sft: {ctp: 3, mute: 1}\n  dpo: {ctp: 3, mute: 1, swap: 2}\n")
    built = build(recipe, out=tmp_path / "built", progress=False).out
    res = export_llamafactory(built, tmp_path / "lf", progress=False)
    assert (res.sft_rows, res.dpo_rows, res.skipped_pairs) == (4, 6, 0)
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info["harken_dpo"]["ranking"] is True and info["harken_sft"]["formatting"] == "sharegpt"

    b = load_built(built)
    sft = read_export(tmp_path / "lf", "sft")
    dpo = read_export(tmp_path / "lf", "dpo")
    assert [(r.prompt, r.answer) for r in sft] == [(x["prompt"], x["answer"]) for x in b.sft]
    assert [(r.prompt, r.chosen, r.rejected) for r in dpo] == [(x["prompt"], x["chosen"], x["rejected"]) for x in b.dpo]
    sr = b.manifest["media"]["sample_rate"]
    for row, exp in zip(b.dpo, dpo):
        rec = record_from_row(row)
        wave, got_sr = sf.read(exp.audio, dtype="float32")
        assert got_sr == sr and exp.video == rec.video
        want = intervened_audio(rec.video, rec.chosen_intervention, sr)
        assert wave.shape == want.shape and np.allclose(wave, want, atol=1e-6)
        if rec.chosen_intervention.kind == "mute":
            assert not np.any(wave)


def test_export_leaves_out_pairs_that_hear_two_tracks_and_says_so(tmp_path, synth_dir, capsys):
    from data_builders.__main__ import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"# Run: python -m data_builders build {recipe}\ndata:\n"
                      f"  annotations: [{synth_dir / 'annotations.jsonl'}]\n  shift: {{bands: [[0.3, 0.6]]}}\n"
                      "  audio_contrast: 0.5\n  dpo: {mute: 4, swap: 4}\n")
    built = build(recipe, out=tmp_path / "built", progress=False).out
    two_tracks = sum(1 for row in load_built(built).dpo if row["chosen_intervention"] != row["rejected_intervention"])
    assert two_tracks == 4
    assert main(["export", str(built), "--out", str(tmp_path / "lf"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wrote 0 SFT and 4 DPO rows" in out and "left out 4 pairs whose two sides hear different audio" in out
    assert len(read_export(tmp_path / "lf", "dpo")) == 4
