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
