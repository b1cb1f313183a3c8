"""Checkpoint fingerprints: small files by their bytes, large weight files by size, time, header and edges."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import eval.context as context
from eval.checkpoint import checkpoint_identity
from eval.context import checkpoint_fingerprint


@pytest.fixture
def small_limit(monkeypatch):
    """A 64 KiB limit, so test-size weights take the large-file path a base model's shards take."""
    monkeypatch.setattr(context, "SMALL_FILE", 64 << 10)


def _save(folder, seed: int, rows: int = 256):
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    save_file({"w": torch.randn(rows, 128, generator=g), "b": torch.randn(128, generator=g)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"hidden_size": 128}))
    return folder


def test_large_file_rewritten_with_other_values_changes_it(tmp_path, small_limit, monkeypatch):
    ck = _save(tmp_path / "ck", seed=0)
    for f in ("model.safetensors", "config.json"):
        os.utime(ck / f, ns=(10**18, 10**18))
    assert (ck / "model.safetensors").stat().st_size > context.SMALL_FILE
    before = checkpoint_fingerprint(ck)
    assert checkpoint_fingerprint(ck) == before
    st = (ck / "model.safetensors").stat()
    monkeypatch.setattr(context, "_FINGERPRINTS", {})
    _save(ck, seed=1)  # same names, dtypes, shapes and size: only values differ
    assert (ck / "model.safetensors").stat().st_size == st.st_size
    assert checkpoint_fingerprint(ck) != before
    # Even with the old modification times restored (in a fresh process: no in-process memo), the changed bytes at
    # the file's edges tell them apart.
    for f in ("model.safetensors", "config.json"):
        os.utime(ck / f, ns=(st.st_atime_ns, st.st_mtime_ns))
    monkeypatch.setattr(context, "_FINGERPRINTS", {})
    assert checkpoint_fingerprint(ck) != before


def test_large_file_other_shape_changes_it(tmp_path, small_limit):
    a = checkpoint_fingerprint(_save(tmp_path / "a", seed=0))
    b = _save(tmp_path / "b", seed=0, rows=257)
    shutil.copystat(tmp_path / "a" / "model.safetensors", b / "model.safetensors")
    assert checkpoint_fingerprint(b) != a


def test_large_file_is_not_read_in_full(tmp_path, small_limit, monkeypatch):
    ck = _save(tmp_path / "ck", seed=0, rows=8192)  # 4 MiB of weights
    reads = []
    real_open = context.Path.open

    def counting_open(self, *args, **kwargs):
        fh = real_open(self, *args, **kwargs)
        real_read = fh.read
        fh.read = lambda n=-1: reads.append(len(out := real_read(n))) or out
        return fh

    monkeypatch.setattr(context.Path, "open", counting_open)
    checkpoint_fingerprint(ck)
    assert 0 < sum(reads) <= 2 * context._EDGE + (64 << 10) + 8 + len('{"hidden_size": 128}')


def test_copies_keep_it_when_times_are_kept(tmp_path, small_limit):
    ck = _save(tmp_path / "ck", seed=0)
    kept = shutil.copytree(ck, tmp_path / "copy")  # copy2: modification times kept
    assert checkpoint_fingerprint(kept) == checkpoint_fingerprint(ck)
    fresh = shutil.copytree(ck, tmp_path / "fresh", copy_function=shutil.copyfile)
    os.utime(fresh / "model.safetensors", ns=(1, 1))
    assert checkpoint_fingerprint(fresh) != checkpoint_fingerprint(ck)  # a large file copied anew counts as new


def test_small_files_count_by_their_bytes(tmp_path):
    ck = _save(tmp_path / "ck", seed=0)  # under the real 64 MiB limit: hashed in full
    fresh = shutil.copytree(ck, tmp_path / "fresh", copy_function=shutil.copyfile)
    os.utime(fresh / "model.safetensors", ns=(1, 1))
    assert checkpoint_fingerprint(fresh) == checkpoint_fingerprint(ck)  # path and time do not matter
    w = np.frombuffer((ck / "model.safetensors").read_bytes(), dtype=np.uint8).copy()
    w[len(w) // 2] ^= 1  # one bit in the middle of the weights
    (ck / "model.safetensors").write_bytes(w.tobytes())
    assert checkpoint_fingerprint(ck) != checkpoint_fingerprint(fresh)


def test_adapter_identity_follows_adapter_and_base(tmp_path, small_limit):
    base = _save(tmp_path / "base", seed=0)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    save_file({"lora_A": torch.ones(4, 128)}, str(adapter / "adapter_model.safetensors"))  # small: full bytes
    first = checkpoint_identity(adapter)
    save_file({"lora_A": torch.ones(4, 128) * 2}, str(adapter / "adapter_model.safetensors"))
    second = checkpoint_identity(adapter)
    assert second != first
    _save(base, seed=1)  # the merged base rewritten: same adapter on another base is another model
    assert checkpoint_identity(adapter) != second


def test_benchmark_script_runs_on_a_small_set(capsys):
    from eval.bench_fingerprint import main

    assert main(["--gb", "0.01", "--shards", "2", "--full-gb", "0.001", "--repeats", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in out[:2]] == ["fingerprint", "full hash"]
    assert out[2].startswith("speed-up at 0.01 GB: ")
