"""Small SFT and DPO datasets for the training tests, built directly from records over synthetic clips.

On clips whose audio is shifted by +1.5 s the chosen answer says the audio is delayed and the rejected one says it
is in sync; on originals the other way round. The prompt is the same for every row.
"""

from __future__ import annotations

from pathlib import Path

from data_builders.annotations import read_annotations
from data_builders.interventions import Intervention
from data_builders.records import PreferencePair, SFTSample

PROMPT = "Are the audio and video synchronised?"
DELAYED = "The audio is delayed."
SYNCED = "The audio is in sync."
SHIFT = Intervention(kind="shift", offset=1.5)


def sft_records(synth_dir: Path) -> list[SFTSample]:
    """One original and one shifted sample per clip."""
    out = []
    for a in read_annotations(Path(synth_dir) / "annotations.jsonl"):
        video = str(Path(a.path).resolve())
        cid = a.record.id
        out.append(SFTSample(id=f"{cid}-o", source="ctp", source_id=cid, video=video, prompt=PROMPT, answer=SYNCED))
        out.append(SFTSample(id=f"{cid}-s", source="ctp", source_id=cid, video=video, prompt=PROMPT, answer=DELAYED,
                             intervention=SHIFT))
    return out


def dpo_records(synth_dir: Path, easy: bool = False) -> list[PreferencePair]:
    """Pairs per clip: on the shifted clip "delayed" over "in sync"; unless ``easy``, also the original clip with
    "in sync" over "delayed" (telling those apart needs the audio; the easy set is learnable from text alone)."""
    out = []
    for a in read_annotations(Path(synth_dir) / "annotations.jsonl"):
        video = str(Path(a.path).resolve())
        cid = a.record.id
        out.append(PreferencePair(id=f"{cid}-s", source="ctp", source_id=cid, video=video, prompt=PROMPT,
                                  chosen=DELAYED, rejected=SYNCED, chosen_intervention=SHIFT,
                                  rejected_intervention=SHIFT))
        if not easy:
            out.append(PreferencePair(id=f"{cid}-o", source="ctp", source_id=cid, video=video, prompt=PROMPT,
                                      chosen=SYNCED, rejected=DELAYED))
    return out


def save(records, folder: Path) -> Path:
    """Write records as an HF ``save_to_disk`` dataset, rows = ``model_dump(mode="json")`` (the built format)."""
    from datasets import Dataset

    Dataset.from_list([r.model_dump(mode="json") for r in records]).save_to_disk(str(folder))
    return folder


def write_recipe(folder: Path, name: str, body: str) -> Path:
    """A recipe file that opens with its command, like the ones in recipes/."""
    path = Path(folder) / f"{name}.yaml"
    path.write_text(f"# Run: python -m train {path}\n{body}", encoding="utf-8")
    return path
