"""Dedup and clean throughput vs datasketch on the same corpus, measured in one run.

  flock /tmp/swahili100-bench.lock python bench/dedup.py --data ../shared/data/sw-news --workers 2

Prints MB/s (UTF-8 bytes of `text`) for: `swahili100 dedup` end to end (read, exact + MinHash
signatures in worker processes, LSH, write survivors and removed/), datasketch `MinHash.bulk`
signatures alone on the same word 5-gram shingles (one process), the naive per-document
`MinHash.update` loop on a slice, and `swahili100 clean` end to end. Ratios are what to quote:
the machine is shared, and contention affects every figure of one run alike.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline import shards  # noqa: E402

_WORD = re.compile(r"\w+")


def shingles(text: str, n: int = 5) -> list[bytes]:
  w = _WORD.findall(text.lower())
  return [" ".join(w[i:i + n]).encode() for i in range(max(1, len(w) - n + 1))]


def phase(module: str, inp: Path, out: Path, workers: int) -> float:
  t = time.perf_counter()
  subprocess.run([sys.executable, "-m", module, "--input", str(inp), "--output", str(out),
                  "--workers", str(workers)], cwd=REPO, check=True, capture_output=True)
  return time.perf_counter() - t


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sw-news"))
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--naive-docs", type=int, default=1000)
  args = p.parse_args()
  from datasketch import MinHash
  texts = [d["text"] for _, d in shards.iter_docs(args.data)]
  mb = sum(len(t.encode()) for t in texts) / 1e6
  res = {"data": args.data, "docs": len(texts), "MB": round(mb, 1), "workers": args.workers}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    res["dedup_s"] = phase("data_pipeline.dedup", Path(args.data), tmp / "d", args.workers)
    res["clean_s"] = phase("data_pipeline.clean", Path(args.data), tmp / "c", args.workers)
  t = time.perf_counter()
  for i in range(0, len(texts), 1000):
    MinHash.bulk([shingles(x) for x in texts[i:i + 1000]], num_perm=128)
  res["datasketch_bulk_s"] = time.perf_counter() - t
  sl = texts[: args.naive_docs]
  t = time.perf_counter()
  for x in sl:
    m = MinHash(num_perm=128)
    for s in shingles(x):
      m.update(s)
  naive_mb = sum(len(x.encode()) for x in sl) / 1e6
  res["naive_MBps"] = round(naive_mb / (time.perf_counter() - t), 2)
  for k in ("dedup", "clean", "datasketch_bulk"):
    res[f"{k}_MBps"] = round(mb / res[f"{k}_s"], 2)
    res[f"{k}_s"] = round(res[f"{k}_s"], 2)
  res["dedup_vs_bulk"] = round(res["dedup_MBps"] / res["datasketch_bulk_MBps"], 2)
  print(json.dumps(res, indent=1))


if __name__ == "__main__":
  main()
