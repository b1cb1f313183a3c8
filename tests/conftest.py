"""Shared fixtures: synthetic clips and tiny backbones are built once per session, offline, under a temp folder."""

from __future__ import annotations

import os

import pytest

# Tests never touch the network: transformers and the HF hub are told so before either is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# As every Harken command does (recipes/quiet.py): idle OpenMP threads sleep, so a busy CI machine is not spun.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Four synthetic clips (seed 1) with annotations.jsonl."""
    from data_builders.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(out, clips=4, seed=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory):
    """Folders of the two tiny thinkers, built with save_pretrained: {name: path}."""
    from train.backbones import TINY_BACKBONES, build_tiny_backbone

    root = tmp_path_factory.mktemp("backbones")
    return {name: build_tiny_backbone(name, root / name) for name in TINY_BACKBONES}
