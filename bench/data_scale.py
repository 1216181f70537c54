"""Data pipeline at 1x and 10x a corpus: time and peak memory of every phase, and their growth.

  flock /tmp/swahili100-bench.lock python bench/data_scale.py \
      --source ../shared/data/sw-news --sizes 1,10 [--workdir /tmp/scale] [--workers 2]

Makes a synthetic corpus of K copies of the `--source` shards (seeded): copy 0 is the source as it
is, every later copy replaces half of each document's words with words drawn from the source's
vocabulary, so MinHash sees new documents and dedup keeps nearly all of them. Size K is copies
0..K-1, one shard per copy. Then runs clean -> dedup -> filter -> train-tokenizer -> tokenize ->
plan-data on each size, each phase as its own `swahili100` process, and prints its wall time and
peak resident memory (the largest of the process and its workers, as `/usr/bin/time %M`), then the
ratio of the largest size to the smallest (`10x/1x time: 10.4x`). A phase is linear in time when
the ratio is near the size ratio and bounded in memory when it is near 1.
Expected time on a 2-core CPU with sw-news (68 MB): ~2 minutes at 1x, ~15 at 10x.
"""

import argparse
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline import shards  # noqa: E402

BIN = Path(sys.executable).parent / "swahili100"
PHASES = ("clean", "dedup", "filter", "train-tokenizer", "tokenize", "plan-data")


def make_corpus(source: Path, copies: int, out: Path, seed: int = 0) -> int:
  """Writes `copies` shards (copy-00000.jsonl.gz ...) under `out`; returns the document count."""
  docs = [d for _, d in shards.iter_docs(source)]
  vocab = sorted({w for d in docs for w in d["text"].split()})
  rng = random.Random(seed)
  out.mkdir(parents=True, exist_ok=True)
  for c in range(copies):
    with gzip.open(out / f"copy-{c:05d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as w:
      for d in docs:
        words = d["text"].split()
        if c:
          words = [rng.choice(vocab) if rng.random() < 0.5 else x for x in words]
        w.write(json.dumps({**d, "id": f"{d['id']}-{c}", "text": " ".join(words)},
                           ensure_ascii=False) + "\n")
  return copies * len(docs)


def measured(argv: list[str]) -> tuple[float, float]:
  """(wall seconds, peak RSS MB of the command and its workers) of one command, run through
  this script so that RUSAGE_CHILDREN holds that command only."""
  start = time.perf_counter()
  r = subprocess.run([sys.executable, __file__, "--measure", *argv], capture_output=True,
                     text=True)
  if r.returncode != 0:
    raise SystemExit(f"{' '.join(argv)} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
  return time.perf_counter() - start, float(r.stdout.strip().splitlines()[-1])


def phase_argv(phase: str, d: Path, workers: int) -> list[str]:
  w = ["--workers", str(workers)]
  return {
      "clean": ["clean", "--input", str(d / "corpus"), "--output", str(d / "cleaned"), *w],
      "dedup": ["dedup", "--input", str(d / "cleaned"), "--output", str(d / "deduped"), *w],
      "filter": ["filter", "--input", str(d / "deduped"), "--output", str(d / "filtered"), *w],
      "train-tokenizer": ["train-tokenizer", "--input", str(d / "filtered"),
                          "--output", str(d / "tok"), "--workers", str(workers)],
      "tokenize": ["tokenize", "--input", str(d / "filtered"), "--output", str(d / "records"),
                   "--tokenizer", str(d / "tok" / "swahili_bpe.json"), *w],
      "plan-data": ["plan-data", "--input", str(d / "filtered"), "--output",
                    str(d / "mixture.json"), "--records", str(d / "records"), *w],
  }[phase]


def main() -> int:
  if sys.argv[1:2] == ["--measure"]:
    subprocess.run([str(BIN), *sys.argv[2:]], check=True, stdout=subprocess.DEVNULL)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return 0
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--source", default=str(REPO.parent / "shared" / "data" / "sw-news"))
  p.add_argument("--sizes", default="1,10", help="corpus sizes in copies of the source")
  p.add_argument("--workdir", default="/tmp/swahili100-data-scale")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--phases", default=",".join(PHASES))
  args = p.parse_args()
  sizes = [int(s) for s in args.sizes.split(",")]
  phases = args.phases.split(",")
  results: dict[tuple[str, int], tuple[float, float]] = {}
  for k in sizes:
    d = Path(args.workdir) / f"x{k}"
    shutil.rmtree(d, ignore_errors=True)
    n = make_corpus(Path(args.source), k, d / "corpus")
    mb = sum(f.stat().st_size for f in (d / "corpus").iterdir()) / 1e6
    print(f"size {k}x: {n:,} documents, {mb:.0f} MB gzip", flush=True)
    for phase in phases:
      results[phase, k] = measured(phase_argv(phase, d, args.workers))
      t, m = results[phase, k]
      print(f"  {phase:16s} {k:3d}x  {t:8.1f} s  peak RSS {m:7.0f} MB", flush=True)
  lo, hi = min(sizes), max(sizes)
  if hi > lo:
    for phase in phases:
      (t1, m1), (t2, m2) = results[phase, lo], results[phase, hi]
      print(f"{phase} {hi}x/{lo}x time: {t2 / t1:.1f}x, peak RSS: {m2 / m1:.2f}x "
            f"({m1:.0f} -> {m2:.0f} MB)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
