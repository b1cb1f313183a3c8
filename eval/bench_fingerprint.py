"""Benchmark checkpoint fingerprinting: a 15 GB sharded checkpoint (sparse files with real safetensors headers) by
:func:`eval.context.checkpoint_fingerprint`, against hashing every byte of a smaller file as fingerprints used to.

``python -m eval.bench_fingerprint [--gb 15] [--shards 4] [--full-gb 1]`` prints the figures; the files are written
under a temporary folder (sparse: they take almost no disk) and removed afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
from pathlib import Path


def write_sparse_shard(path: Path, nbytes: int) -> None:
    """A ``.safetensors`` file of one bf16 tensor of ``nbytes`` bytes: a real header, then a hole."""
    elems = nbytes // 2
    header = json.dumps({"w": {"dtype": "BF16", "shape": [elems], "data_offsets": [0, elems * 2]}}).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.truncate(8 + len(header) + elems * 2)


def full_hash(path: Path) -> str:
    """Every byte through SHA-256 in 1 MiB chunks: what fingerprints did before."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def measure(gb: float = 15.0, shards: int = 4, full_gb: float = 1.0,
            repeats: int = 5) -> tuple[list[float], list[float]]:
    """Seconds of ``repeats`` cold fingerprints of a ``gb`` checkpoint, and of hashing a ``full_gb`` file in full
    (``repeats // 2`` times, at least once)."""
    import eval.context as context
    from train.bench import timed

    with tempfile.TemporaryDirectory(prefix="harken-fp-bench-") as tmp:
        ck = Path(tmp) / "checkpoint"
        ck.mkdir()
        for i in range(shards):
            write_sparse_shard(ck / f"model-{i + 1:05d}-of-{shards:05d}.safetensors", int(gb * 1e9 / shards))
        (ck / "config.json").write_text(json.dumps({"model_type": "bench"}))

        def fingerprint_cold():
            context._FINGERPRINTS.clear()  # a fresh process: no in-process memo
            context.checkpoint_fingerprint(ck)

        new = timed(fingerprint_cold, repeats)
        one = Path(tmp) / "full.safetensors"
        write_sparse_shard(one, int(full_gb * 1e9))
        old = timed(lambda: full_hash(one), max(1, repeats // 2))
    return new, old


def bench(runs: int = 5) -> list[dict]:
    """``make bench``'s rows: fingerprinting a 15 GB checkpoint (target <= 1 s), and hashing it in full as
    fingerprints used to (extrapolated from a 1 GB file)."""
    from train.bench import row

    new, old = measure(repeats=runs)
    return [row("fingerprint a 15 GB checkpoint", "s", new, "<= 1"),
            row("hash every byte of 15 GB (before; from 1 GB)", "s", [15 * t for t in old])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=15.0, help="checkpoint size in GB (10^9 bytes)")
    ap.add_argument("--shards", type=int, default=4, help="weight files it is split into")
    ap.add_argument("--full-gb", type=float, default=1.0, help="size of the file hashed in full for comparison")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    new, old = measure(args.gb, args.shards, args.full_gb, args.repeats)
    per_gb_old = statistics.median(old) / args.full_gb
    print(f"fingerprint, {args.gb:g} GB in {args.shards} shards: median {statistics.median(new) * 1e3:.1f} ms "
          f"[min {min(new) * 1e3:.1f}] over {len(new)} runs")
    print(f"full hash, {args.full_gb:g} GB file: median {statistics.median(old):.2f} s [min {min(old):.2f}] "
          f"(sparse file, so no disk reads: a lower bound); {args.gb:g} GB at that rate: {per_gb_old * args.gb:.1f} s")
    print(f"speed-up at {args.gb:g} GB: {per_gb_old * args.gb / statistics.median(new):.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
