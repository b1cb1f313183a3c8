"""Spectrogram MCQ build with audio and images: parameters, files, resumability, CLI, SFT records."""

from __future__ import annotations

import json

import pytest

from data_builders.spectrogram_mcq import build, read_items, sft_records


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("smcq")
    res = build(out, words=40, seed=0, workers=2, progress=False)
    return out, res


def test_every_item_records_the_rendering_parameters(built):
    out, res = built
    items = read_items(out / "items.jsonl")
    assert res.items == len(items) == 40
    for it in items:
        p = it.params
        # the benchmark's STFT and dynamic range, and the rest of what was needed to redraw the image
        assert (p["n_fft"], p["hop_length"], p["top_db"], p["sr"]) == (128, 22, 70, 22050)
        for key in ("window", "db_ref", "cmap", "fig_inches", "dpi", "axes_rect", "voice", "speed_wpm",
                    "waveform_ylim", "synthesiser"):
            assert key in p, key
        assert p["synthesiser"].startswith("eSpeak NG")


def test_files_exist_and_images_share_one_size(built):
    import soundfile as sf
    from PIL import Image

    out, _ = built
    sizes = set()
    for it in read_items(out / "items.jsonl"):
        y, sr = sf.read(out / it.audio)
        assert sr == it.params["sr"] and len(y) > 0.1 * sr
        spec, wave = Image.open(out / it.spectrogram), Image.open(out / it.waveform)
        sizes.add((spec.size, wave.size))
        assert spec.size == wave.size == (448, 336)
        assert Image.open(out / it.combined).size == (448, 672)
    assert len(sizes) == 1


def test_spectrograms_differ_between_words(built):
    import numpy as np
    from PIL import Image

    out, _ = built
    items = read_items(out / "items.jsonl")
    a, b = (np.asarray(Image.open(out / it.spectrogram).convert("L"), dtype=float) for it in items[:2])
    assert np.abs(a - b).mean() > 1.0


def test_rebuild_skips_rendered_items_and_is_identical(built):
    out, _ = built
    before = (out / "items.jsonl").read_text()
    res = build(out, words=40, seed=0, workers=1, progress=False)
    assert res.rendered == 0 and res.skipped == 40
    assert (out / "items.jsonl").read_text() == before
    assert not list(out.rglob("*.tmp*"))


def test_cli_builds_and_reports(tmp_path, capsys):
    from data_builders.__main__ import main

    assert main(["spectrogram-mcq", "--out", str(tmp_path), "--words", "9", "--seed", "1", "--quiet"]) == 0
    assert "wrote 8 items" in capsys.readouterr().out  # 9 words -> two option sets of four
    rows = [json.loads(x) for x in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "test"}
    assert main(["spectrogram-mcq", "--out", str(tmp_path), "--words", "3", "--quiet"]) == 2


def test_sft_records_cover_every_condition(built):
    out, _ = built
    train = read_items(out / "items.jsonl", "train")
    recs = sft_records(out / "items.jsonl", "train")
    assert len(recs) == 4 * len(train)
    by_id = {it.id: it for it in train}
    conds = set()
    for r in recs:
        it = by_id[r.source_id]
        condition = r.meta["condition"]
        conds.add(condition)
        kind = condition.split("/")[0]
        assert r.answer == getattr(it.options, kind)[it.answer]
        assert all(o in r.prompt for o in getattr(it.options, kind))
        assert len(r.images) == 1 and r.images[0].endswith("_spec.png" if condition.endswith("spectrogram")
                                                           else "_both.png")
    assert len(conds) == 4


def test_manifest_states_mode_and_mean_distractor_ped(tmp_path, capsys):
    from data_builders.__main__ import main

    assert main(["spectrogram-mcq", "--out", str(tmp_path), "--words", "12", "--distractors", "nearest",
                 "--quiet"]) == 0
    items = read_items(tmp_path / "items.jsonl")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    distractor_peds = [p for it in items for k, p in enumerate(it.ped) if k != it.answer]
    assert manifest["distractors"] == "nearest" and manifest["items"] == len(items) == 12
    assert manifest["mean_distractor_ped"] == round(sum(distractor_peds) / len(distractor_peds), 4)
    assert f"mean answer-to-distractor PED {manifest['mean_distractor_ped']}" in capsys.readouterr().out
    assert sum(manifest["answer_positions"]["train"]) == manifest["items_per_split"]["train"]
