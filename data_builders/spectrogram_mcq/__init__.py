"""The spectrogram multiple-choice benchmark (after "Seeing isn't Hearing").

``options`` (lexicon, PED, option sets; no synthesiser needed), ``render`` (eSpeak NG speech, librosa images),
``build`` (the command, item records, prompts, SFT rows). Re-exported here; importing this package imports
numpy and pydantic only.
"""

from data_builders.spectrogram_mcq.build import (CONDITIONS, FULL_WORDS, BuildResult, SpectrogramItem,
                                                 build, build_summary, plan_items, prompt, read_items,
                                                 sft_records)
from data_builders.spectrogram_mcq.options import (assign_items, cluster_option_sets, load_lexicon,
                                                   nearest_neighbour_sets, ped, segments)
from data_builders.spectrogram_mcq.render import RenderParams

__all__ = ["CONDITIONS", "FULL_WORDS", "BuildResult", "RenderParams", "SpectrogramItem", "assign_items",
           "build", "build_summary", "cluster_option_sets", "load_lexicon", "nearest_neighbour_sets", "ped", "plan_items", "prompt", "read_items",
           "segments", "sft_records"]
