"""Downloads of the real datasets in their published layouts, built from generated media (nothing is fetched).

Each writer follows its dataset's public description; the fields, nesting and types are theirs:

- FineVideo: the dataset card of https://huggingface.co/datasets/HuggingFaceFV/finevideo (``dataset_info.features``:
  ``mp4`` binary + ``json`` struct; shards ``data/train-XXXXX-of-01357.parquet``; the card's streaming example that
  exports ``videos/sample_N.mp4`` + ``metadata/sample_N.json``) and the annotation schema of
  https://github.com/huggingface/fineVideo (``contentannotation/video2annotation.py``: scenes with ``timestamps``,
  ``activities[{description, timestamp{start_timestamp, end_timestamp}}]``, ``mood{description, keyMoments}``,
  ``narrativeProgression[{description, timestamp}]``, float ``audioVisualCorrelation`` and ``dynamismScore``).
- Oops: the download of https://oops.cs.columbia.edu/data/ as its official loader reads it
  (https://github.com/cvlab-columbia/oops, ``dataloader.py``): ``annotations/transition_times.json``
  (``{name: {t, rel_t, n_notfound, len}}``), ``heldout_transition_times.json`` (no ``len``), ``train.txt``,
  ``val.txt``, ``*_filtered.txt``, and videos in ``oops_video/train/`` and ``oops_video/val/``.
- LLaVA-Hound DPO: ``video_instruction/train/dpo/sft_dpo_17k.jsonl`` of
  https://huggingface.co/datasets/ShareGPTVideo/train_video_and_instruction (fields ``id, prompt, answer, chosen,
  rejected, chosen_score, rejected_score, video``), with ``video`` relative to a separate training video folder
  (LLaVA-NeXT's ``--video_folder``; https://github.com/RifleZhang/LLaVA-Hound-DPO ``setup/setup_train_data.sh``)
  that holds JPEG frame folders; mp4s (with and without sound) sit beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from _data_media import write_clip


def ts(seconds: float) -> str:
    """Seconds as FineVideo writes them: "HH:MM:SS.mmm"."""
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _span(a: float, b: float) -> dict:
    return {"start_timestamp": ts(a), "end_timestamp": ts(b)}


def fv_scene(scene_id: int, start: float, end: float, activities: list[tuple[str, float, float]],
             correlation: float) -> dict:
    """A scene with every field of the published struct, in its real type."""
    return {
        "sceneId": scene_id, "title": f"Scene {scene_id}", "timestamps": _span(start, end),
        "cast": ["Host"], "activities": [{"description": d, "timestamp": _span(a, b)} for d, a, b in activities],
        "props": [{"name": "table", "timestamp": _span(start, end)}],
        "videoEditingDetails": [{"description": "cut to a close-up", "timestamps": _span(start, start + 0.5)}],
        "mood": {"description": "Calm", "keyMoments": [{"timestamp": ts(start + 0.5),
                                                       "changeDescription": "music fades in"}]},
        "narrativeProgression": [{"description": f"Part {scene_id} of the tour begins.", "timestamp": ts(start)}],
        "characterInteraction": [{"characters": ["Host"], "description": "talks to the camera"}],
        "thematicElements": "gardening", "contextualRelevance": "a how-to video",
        "dynamismScore": 0.4, "audioVisualCorrelation": correlation,
    }


def fv_json(name: str, duration: float, scenes: list[dict], speech: list[tuple[float, float, str]]) -> dict:
    """A row's ``json`` struct: top-level provenance, ``content_metadata`` and ``timecoded_text_to_speech``."""
    return {
        "content_fine_category": "Gardening", "content_parent_category": "Hobbies",
        "content_metadata": {
            "title": f"Video {name}", "description": "A tour of a garden.", "fps": 25.0,
            "characterList": [{"characterId": "1", "name": "Host", "description": "a woman in a green coat"}],
            "scenes": scenes,
            "qAndA": [{"question": "What is shown?", "answer": "A garden."}],
            "storylines": {"description": "a tour", "scenes": [s["sceneId"] for s in scenes],
                           "climax": {"description": "the roses", "timestamp": ts(duration / 2)}},
            "trimmingSuggestions": [],
        },
        "duration_seconds": int(duration), "original_json_filename": f"{name}.json",
        "original_video_filename": f"{name}.mp4", "resolution": "160x96",
        "text_to_speech": " ".join(t for _, _, t in speech), "text_to_speech_word_count": 12,
        "timecoded_text_to_speech": [{"start": ts(a), "end": ts(b), "text": t} for a, b, t in speech],
        "youtube_title": f"Video {name}", "youtube_channel": "garden", "youtube_upload_date": "20240101",
        "youtube_view_count": 10, "youtube_categories": ["Howto & Style"], "youtube_tags": ["garden"],
    }


@dataclass
class FineVideoDownload:
    root: Path                      # the dataset folder (data/train-*.parquet under it)
    shard: Path
    exported: Path                  # the card's export: videos/ + metadata/
    sources: dict[str, Path]        # original_video_filename stem -> the generated mp4
    speech: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)


# Video "garden": 20 s, three scenes; the third starts at 13 s, past a recipe's 8 s clip length, so it must be cut
# into its own file to be trainable. Key frames every 2 s, as in web video; tone bursts mark when each line of
# speech starts.
GARDEN_SPEECH = [(1.0, 2.5, "Welcome to the garden tour"), (3.5, 5.0, "These roses bloom in June"),
                 (7.0, 8.5, "Here is the vegetable patch"), (10.0, 11.5, "Water them every morning"),
                 (14.0, 15.5, "Finally the pond with its fish"), (17.0, 18.5, "Thanks for watching the tour")]
COOK_SPEECH = [(1.0, 2.5, "Now we add the garlic"), (3.5, 4.5, "Stir it for a minute")]


def write_finevideo(root: Path) -> FineVideoDownload:
    """One hub shard with three rows (two good videos, one with a wrong-typed field: broken on purpose) and the
    card's ``videos/`` + ``metadata/`` export of the two good ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = root / "src"
    garden = write_clip(src / "garden.mp4", duration=20.0, fps=25, size=(160, 96), sr=44100, gop=50,
                        events=[(a, 300.0 + 40 * i) for i, (a, _, _) in enumerate(GARDEN_SPEECH)])
    cook = write_clip(src / "cook.mp4", duration=6.0, fps=24, size=(160, 96), sr=16000, channels=1,
                      events=[(a, 600.0) for a, _, _ in COOK_SPEECH])
    garden_json = fv_json("garden", 20.0, [
        fv_scene(1, 0.0, 6.0, [("A woman waves at the camera", 0.5, 3.0), ("She points at a rose bush", 3.0, 5.5)],
                 0.9),
        fv_scene(2, 6.0, 13.0, [("She kneels by the vegetables", 6.5, 9.0), ("She fills a watering can", 9.5, 12.0)],
                 0.8),
        fv_scene(3, 13.0, 20.0, [("She walks to a pond", 13.5, 16.0), ("She waves goodbye", 16.5, 19.0)], 0.3),
    ], GARDEN_SPEECH)
    cook_json = fv_json("cook", 6.0, [
        fv_scene(1, 0.0, 3.0, [("A man chops garlic", 0.5, 2.8)], 0.95),
        fv_scene(2, 3.0, 6.0, [("He stirs a pan", 3.2, 5.0)], 0.9),
    ], COOK_SPEECH)
    broken = fv_json("broken", 6.0, [fv_scene(1, 0.0, 3.0, [("?", 0.0, 1.0)], 0.5)], [])
    broken["content_metadata"]["scenes"][0]["audioVisualCorrelation"] = 1.7  # outside the card's [0, 1] score
    rows = [(garden, garden_json), (cook, cook_json), (cook, broken)]
    table = pa.table({"mp4": pa.array([p.read_bytes() for p, _ in rows], pa.binary()),
                      "json": pa.array([j for _, j in rows])})
    shard = root / "finevideo" / "data" / "train-00000-of-01357.parquet"
    shard.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, shard)
    exported = root / "finevideo_export"
    for i, (video, meta) in enumerate(rows[:2]):  # the card's example names files sample_<row>
        (exported / "videos").mkdir(parents=True, exist_ok=True)
        (exported / "metadata").mkdir(parents=True, exist_ok=True)
        (exported / "videos" / f"sample_{i}.mp4").write_bytes(video.read_bytes())
        (exported / "metadata" / f"sample_{i}.json").write_text(json.dumps(meta), encoding="utf-8")
    return FineVideoDownload(root=root / "finevideo", shard=shard, exported=exported,
                             sources={"garden": garden, "cook": cook},
                             speech={"garden": GARDEN_SPEECH, "cook": COOK_SPEECH})


# Oops clips: name -> (split, annotator times, failure time used for the tone, per-clip sound). Clip names keep the
# download's style (a video title plus an index).
OOPS_CLIPS = {
    "Best Fails of May 2017 (Part 1)0": ("train", [1.5, 1.6, 1.7], 1.6, "a dull thud on wood", 220.0),
    "Best Fails of May 2017 (Part 1)1": ("train", [2.0, -1, 2.2], 2.0, "glass shattering", 880.0),
    "Skate Fails 201812": ("train", [1.2, 1.4, 1.3], 1.3, "a skateboard clattering", 440.0),
    "Skate Fails 201813": ("train", [2.4, 2.5, 2.3], 2.4, "a splash into water", 330.0),
    "Trampoline Fails9": ("train", [-1, -1, 1.1], -1.0, "a spring creaking", 550.0),       # no_transition
    "Trampoline Fails10": ("train", [1.0, 1.1, 1.2], 1.1, "a metal clang", 660.0),          # not in filtered list
    "Winter Fails 20195": ("train", [1.8, 1.9, 2.0], 1.9, "a crunch of snow", 150.0),       # mp4 missing
    "Kitchen Fails7": ("val", [1.5, 1.4, 1.6], 1.5, "pans crashing", 770.0),
    "Kitchen Fails8": ("val", [2.1, 2.0, 2.2], 2.1, "a plate breaking", 990.0),              # held-out file only
}
OOPS_NOT_FILTERED = {"Trampoline Fails10"}
OOPS_MISSING_VIDEO = {"Winter Fails 20195"}
OOPS_HELDOUT = {"Kitchen Fails8"}


def write_oops(root: Path) -> Path:
    """An Oops download (``oops_dataset/``) plus a Thud-style event JSONL keyed by clip id; returns the root."""
    root = root / "oops_dataset"
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    main, heldout = {}, {}
    for i, (name, (split, times, t, _, freq)) in enumerate(OOPS_CLIPS.items()):
        duration = 4.0
        if name not in OOPS_MISSING_VIDEO:
            write_clip(root / "oops_video" / split / f"{name}.mp4", duration=duration, fps=25, size=(128, 96),
                       sr=16000, channels=1, events=[(max(t, 0.5), freq)], seed=i)
        entry = {"t": times, "rel_t": [x / duration if x >= 0 else -1 for x in times],
                 "n_notfound": sum(1 for x in times if x < 0)}
        if name in OOPS_HELDOUT:
            heldout[name] = entry  # the held-out annotations carry no `len`
        else:
            main[name] = {**entry, "len": duration}
    (ann / "transition_times.json").write_text(json.dumps(main), encoding="utf-8")
    (ann / "heldout_transition_times.json").write_text(json.dumps(heldout), encoding="utf-8")
    for split in ("train", "val"):
        names = [n for n, v in OOPS_CLIPS.items() if v[0] == split]
        (ann / f"{split}.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
        (ann / f"{split}_filtered.txt").write_text("".join(f"{n}\n" for n in names if n not in OOPS_NOT_FILTERED),
                                                   encoding="utf-8")
    events = root.parent / "thud_events.jsonl"
    events.write_text("".join(json.dumps({"id": f"oops_{n}", "visual_event": f"the person in clip {i} falls",
                                          "audio_event": v[3]}) + "\n"
                              for i, (n, v) in enumerate(OOPS_CLIPS.items())), encoding="utf-8")
    return root


@dataclass
class LlavaDownload:
    jsonl: Path
    video_folder: Path
    good: list[str]       # ids that must be read
    broken: dict[str, str]  # id (or line tag) -> quarantine reason


def write_llava_hound(root: Path) -> LlavaDownload:
    """``dpo/sft_dpo_17k.jsonl`` and a separate ``train_300k/`` video folder: JPEG frame folders (the release's
    form), an mp4 with sound and a silent mp4; one line lacks ``chosen`` and one names a missing video."""
    from PIL import Image

    videos = root / "train_300k"
    frames = videos / "v_7bUu05RIksU-Scene-006"
    frames.mkdir(parents=True, exist_ok=True)
    for k in range(8):  # 4 s at the folders' 2 frames per second
        img = np.full((96, 128, 3), 20 * k, np.uint8)
        img[:, 10 * k:10 * k + 12] = (250, 120, 30)
        Image.fromarray(img).save(frames / f"c01_{k + 1:04d}.jpg", quality=90)
    write_clip(videos / "ego4d_clip_012.mp4", duration=3.0, fps=25, size=(128, 96), sr=16000, channels=1)
    write_clip(videos / "webvid_silent_77.mp4", duration=3.0, fps=25, size=(128, 96), sr=None)
    rows = [
        {"id": "v_7bUu05RIksU-Scene-006_0", "video": "v_7bUu05RIksU-Scene-006"},
        {"id": "ego4d_clip_012_1", "video": "ego4d_clip_012.mp4"},
        {"id": "webvid_silent_77_0", "video": "webvid_silent_77"},  # a bare name: the .mp4 beside it
        {"id": "gone_3", "video": "v_gone-Scene-001"},
    ]
    lines = []
    for i, r in enumerate(rows):
        lines.append({"id": r["id"], "prompt": "What does the person do in the video?",
                      "answer": "They move an orange bar across the frame.",
                      "chosen": "An orange bar slides from left to right across a dark frame.",
                      "rejected": "A dog runs across a beach.", "chosen_score": 5.0, "rejected_score": 2.0,
                      "video": r["video"]})
    bad = dict(lines[0], id="no_chosen_9")
    del bad["chosen"]
    lines.insert(2, bad)
    jsonl = root / "dpo" / "sft_dpo_17k.jsonl"
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    jsonl.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return LlavaDownload(jsonl=jsonl, video_folder=videos,
                         good=["v_7bUu05RIksU-Scene-006_0", "ego4d_clip_012_1", "webvid_silent_77_0"],
                         broken={"no_chosen_9": "invalid_annotation", "gone_3": "missing_file"})


# Full Qwen-Omni release checkpoints (Qwen/Qwen2.5-Omni-7B, Qwen/Qwen3-Omni-30B-A3B-Instruct on the Hugging Face hub):
# one config.json whose model_type is the whole model's, holding `thinker_config`, `talker_config` and the vocoder's
# config (`token2wav_config`, Qwen3: `code2wav_config`); weights sharded as model-0000K-of-0000N.safetensors with a
# model.safetensors.index.json, keyed `thinker.*`, `talker.*` and `token2wav.*` / `code2wav.*`; processor and
# tokenizer files beside them.
OMNI_RELEASES = {
    "qwen2_5_omni": ("Qwen2_5OmniConfig", "token2wav", "Qwen2_5OmniForConditionalGeneration"),
    "qwen3_omni_moe": ("Qwen3OmniMoeConfig", "code2wav", "Qwen3OmniMoeForConditionalGeneration"),
}


def write_omni_release(thinker_dir: Path, out: Path, seed: int = 0) -> Path:
    """A full release layout around a tiny thinker folder: the thinker's own weights under ``thinker.``, small random
    talker and vocoder tensors (never loaded by Harken, present as in a release), the processor files copied."""
    import shutil

    import torch
    import transformers
    from safetensors import safe_open
    from safetensors.torch import save_file

    thinker_config = transformers.AutoConfig.from_pretrained(thinker_dir)
    model_type = thinker_config.model_type.removesuffix("_thinker")
    config_class, vocoder, arch = OMNI_RELEASES[model_type]
    config = getattr(transformers, config_class)(thinker_config=thinker_config.to_dict())
    config.architectures = [arch]
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    with safe_open(str(thinker_dir / "model.safetensors"), "pt") as f:
        thinker = {f"thinker.{k}": f.get_tensor(k) for k in f.keys()}
    g = torch.Generator().manual_seed(seed)
    rest = {"talker.model.embed_tokens.weight": torch.randn(32, 16, generator=g),
            "talker.model.layers.0.self_attn.q_proj.weight": torch.randn(16, 16, generator=g),
            "talker.codec_head.weight": torch.randn(32, 16, generator=g),
            f"{vocoder}.decoder.0.conv.weight": torch.randn(8, 4, 3, generator=g)}
    shards = {"model-00001-of-00002.safetensors": thinker, "model-00002-of-00002.safetensors": rest}
    weight_map, total = {}, 0
    for name, tensors in shards.items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
        total += sum(v.numel() * v.element_size() for v in tensors.values())
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    for f in thinker_dir.iterdir():
        if f.is_file() and f.name not in ("config.json", "model.safetensors", "generation_config.json"):
            shutil.copy(f, out / f.name)
    return out
