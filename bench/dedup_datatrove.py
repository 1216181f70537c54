"""`swahili100 dedup` beside datatrove's MinHash deduplication (the FineWeb pipeline), one run.

  flock /tmp/swahili100-bench.lock .venv/bin/python bench/dedup_datatrove.py \
      --data ../shared/data/sw-news --workers 2 [--limit-docs N] [--dup-rate 0.1]

Needs the `data` and `bench` extras (`pip install -e .[data,bench]`: datatrove 0.10.1, spaCy for
its Swahili word tokenizer, orjson for its JsonlReader).

Corpus, derived from `--data` (sw-news itself has 2 exact and no near duplicates): about
`--limit-docs` documents (the first of every shard, in proportion; all by default), and each
document with probability `--dup-rate` gets 1-3 planted copies (one in five exact, the others with
every word replaced by a random corpus word with probability U(0, 0.1): true Jaccard ~0.4-1),
placed at random in the shards (seeded). Both sides read these shards, each in its own subprocess,
one after the other:

- ours: `python -m data_pipeline.dedup --workers W` (`swahili100 dedup`: exact keys, MinHash
  signatures, LSH with signature-Jaccard verification, survivors and removed/ written);
- datatrove: its four MinHash stages with `LocalPipelineExecutor`, as its FineWeb example
  (examples/minhash_deduplication.py) runs them: `JsonlReader` + `MinhashDedupSignature` (one
  task per shard), `MinhashDedupBuckets` (one task per band), `MinhashDedupCluster` (one task),
  `JsonlReader` + `MinhashDedupFilter` (removed documents to an exclusion `JsonlWriter`) +
  `JsonlWriter` (survivors); W workers.

Matched: word n-grams (`dedup.shingle`, 5), and datatrove's `num_buckets` x `hashes_per_bucket` =
the bands x rows datasketch's `MinHashLSH` picks for ours (`dedup.threshold` 0.8, `dedup.num_perm`
128: 9 x 13). Not matchable, and printed: datatrove normalises with `simplify_text` (lower case,
every number -> "0", punctuation -> space, diacritics stripped) and splits words with spaCy's
blank "tn" tokenizer (its assignment for swh; on simplified text the same as splitting on spaces,
2,000 of 2,000 sw-news documents), hashes n-grams to 64 bits and permutes mod 2^61-1; ours lower-
cases, takes `\\w`-like words with no number or diacritic folding, 32-bit hashes (word 5-gram sets
of the two agree at Jaccard 0.88 on 3,000 sw-news documents, numbers being most of the rest).
The n-gram hash is SHA-1, as datatrove hashed when FineWeb was built; `--hash xxhash`, its 0.10
default, needs xxhash<4 (datatrove 0.10.1 hands `str` to xxhash, which 4.x refuses: datatrove
issue #508); SHA-1 costs ~0.7 us more per n-gram, ~1 s of CPU per 10 MB of text.
Ours verifies each LSH candidate (signature Jaccard >= threshold over all 128 permutations) and
keeps the first document of a star cluster; datatrove keeps one document of each connected
component of band matches, unverified. Ours drops exact duplicates (lower-cased, whitespace-
collapsed text) before MinHash; datatrove finds them by MinHash (equal signatures). So "removed"
compares ours' exact + near duplicates with datatrove's MinHash removals; "in duplicate clusters"
compares the documents each puts in a cluster of two or more (whichever it keeps); "planted pairs"
counts (original, copy) pairs each puts in one cluster, by the pair's true word 5-gram Jaccard.

Measured per side: wall time of its subprocess (interpreter start, imports, reading gzip, writing
survivors and removed documents), and peak memory: the largest sum of PSS (shared pages counted
once) over the subprocess and all its descendants, sampled every 0.1 s from /proc (datatrove's
pool workers, multiprocess manager and forkserver included); the largest single-process RSS is
printed beside it. Prints `ours/datatrove time: Rx` and `ours/datatrove peak memory: Rx` (< 1:
ours faster / smaller), the agreement lines, then one JSON object.

Expected duration, 2-core AMD EPYC, --workers 2: --limit-docs 3000 (3,549 documents with the
copies, 8.2 MB) ~1.5 min on a busy machine (datatrove 76 s, 87% of it the signature stage, mostly
spaCy; ours 3 s); the full sw-news (~34,800 documents, ~82 MB with the copies) ~6-12 min, nearly
all of it datatrove's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline import shards  # noqa: E402

DATATROVE_LANGUAGE = "swh"   # Swahili (individual language): spaCy blank "tn" in datatrove
NEAR = ("exact_duplicate", "near_duplicate")
STAGES = ("signature", "buckets", "cluster", "filter")
_WORD = re.compile(r"\w+")


# ----------------------------------------------------------------------------- memory sampling

def _children() -> dict[int, list[int]]:
  out: dict[int, list[int]] = {}
  for d in os.listdir("/proc"):
    if not d.isdigit():
      continue
    try:
      with open(f"/proc/{d}/stat", "rb") as f:
        s = f.read()
    except OSError:
      continue
    ppid = int(s[s.rindex(b")") + 2:].split()[1])
    out.setdefault(ppid, []).append(int(d))
  return out


def _pss_rss_kb(pid: int) -> tuple[int, int]:
  pss = rss = 0
  try:
    with open(f"/proc/{pid}/smaps_rollup") as f:
      for line in f:
        if line.startswith("Pss:"):
          pss = int(line.split()[1])
        elif line.startswith("Rss:"):
          rss = int(line.split()[1])
  except OSError:
    pass
  return pss, rss


def run_measured(cmd: list[str], log: Path, interval: float = 0.1) -> dict:
  """Runs `cmd` (output to `log`); wall seconds, peak summed PSS and peak single RSS in MB."""
  peak = {"pss": 0, "rss": 0, "procs": 0}
  with open(log, "wb") as lf:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=REPO, stdout=lf, stderr=subprocess.STDOUT)
    done = threading.Event()

    def sample():
      while not done.is_set():
        kids, tree, todo = _children(), [], [p.pid]
        while todo:
          x = todo.pop()
          tree.append(x)
          todo += kids.get(x, [])
        sizes = [_pss_rss_kb(x) for x in tree]
        peak["pss"] = max(peak["pss"], sum(s[0] for s in sizes))
        peak["rss"] = max(peak["rss"], max((s[1] for s in sizes), default=0))
        peak["procs"] = max(peak["procs"], len(tree))
        done.wait(interval)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = p.wait()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
  if rc != 0:
    sys.stderr.write(log.read_text(errors="replace")[-4000:])
    raise SystemExit(f"{cmd[:4]} failed with exit code {rc} (log: {log})")
  return {"wall_s": wall, "peak_pss_mb": peak["pss"] / 1024, "peak_rss_mb": peak["rss"] / 1024,
          "processes": peak["procs"]}


# ----------------------------------------------------------------------------- datatrove side

def datatrove_side(argv: list[str]) -> int:
  """The datatrove pipeline, run in its own process by `main` (`--side datatrove`)."""
  p = argparse.ArgumentParser()
  p.add_argument("--input", required=True)
  p.add_argument("--paths-file", required=True)
  p.add_argument("--work", required=True)
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--shingle", type=int, required=True)
  p.add_argument("--bands", type=int, required=True)
  p.add_argument("--rows", type=int, required=True)
  p.add_argument("--hash", default="sha1")
  a = p.parse_args(argv)
  from datatrove.executor import LocalPipelineExecutor
  from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets,
                                                MinhashDedupCluster, MinhashDedupFilter,
                                                MinhashDedupSignature)
  from datatrove.pipeline.readers import JsonlReader
  from datatrove.pipeline.writers import JsonlWriter
  from datatrove.utils.hashing import HashConfig

  work = Path(a.work)
  cfg = MinhashConfig(n_grams=a.shingle, num_buckets=a.bands, hashes_per_bucket=a.rows,
                      hash_config=HashConfig(precision=64, hash_fc=a.hash))
  tasks = len(Path(a.paths_file).read_text().split())

  def reader():   # task k reads line k of the paths file: shard k in our order
    return JsonlReader(a.input, paths_file=a.paths_file, text_key="text", id_key="id")

  stages = [
      ("signature", [reader(), MinhashDedupSignature(output_folder=str(work / "signatures"),
                                                     config=cfg, language=DATATROVE_LANGUAGE)],
       tasks, a.workers),
      ("buckets", [MinhashDedupBuckets(input_folder=str(work / "signatures"),
                                       output_folder=str(work / "buckets"), config=cfg)],
       cfg.num_buckets, a.workers),
      ("cluster", [MinhashDedupCluster(input_folder=str(work / "buckets"),
                                       output_folder=str(work / "remove_ids"), config=cfg)], 1, 1),
      ("filter", [reader(), MinhashDedupFilter(
          input_folder=str(work / "remove_ids"),
          exclusion_writer=JsonlWriter(str(work / "removed"))),
          JsonlWriter(str(work / "output"))], tasks, a.workers),
  ]
  times = {}
  for name, pipeline, n, w in stages:
    t = time.perf_counter()
    LocalPipelineExecutor(pipeline=pipeline, tasks=n, workers=min(w, n),
                          logging_dir=str(work / "logs" / name)).run()
    times[name] = time.perf_counter() - t
  shards.write_json(work / "stage_times.json", times)
  return 0


# ----------------------------------------------------------------------------- corpus

def make_corpus(src: Path, dst: Path, limit: int, dup_rate: float, seed: int) -> list:
  """The corpus both sides read, derived from `src` (same shard names, under `dst`): with
  `limit`, about that many documents, the first ones of every shard in proportion to its size;
  then each document, with probability `dup_rate`, gets 1-3 planted copies (one in five exact,
  the others with each word replaced by a random word of the corpus with probability U(0, 0.1)),
  each at a random position of a random shard. Returns the planted (original id, copy id)."""
  per_shard = [(shards.shard_name(q, src), list(shards.read_shard(q, shards.Stats())))
               for q in shards.list_shards(src)]
  total = sum(len(docs) for _, docs in per_shard)
  if limit and limit < total:
    per_shard = [(n, docs[:max(1, round(limit * len(docs) / total))]) for n, docs in per_shard]
  rng = random.Random(seed)
  vocab = sorted({w for _, docs in per_shard for d in docs for w in d["text"].split()})
  planted, extra = [], [[] for _ in per_shard]
  for _, docs in per_shard:
    for d in docs:
      if rng.random() >= dup_rate:
        continue
      for k in range(rng.randint(1, 3)):
        edit = 0.0 if rng.random() < 0.2 else rng.uniform(0.0, 0.1)
        words = [rng.choice(vocab) if rng.random() < edit else w for w in d["text"].split()]
        copy = {**d, "id": f"{d['id']}~copy{k}", "text": " ".join(words)}
        extra[rng.randrange(len(per_shard))].append(copy)
        planted.append((d["id"], copy["id"]))
  for (name, docs), more in zip(per_shard, extra):
    for copy in more:
      docs.insert(rng.randrange(len(docs) + 1), copy)
    with shards.ShardWriter(dst / name) as w:
      for d in docs:
        w.write(d)
  return planted


def shingle_set(text: str, n: int) -> set:
  w = _WORD.findall(text.lower())
  return {" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


# ----------------------------------------------------------------------------- comparison

def _read_jsonl_gz(folder: Path):
  for f in sorted(folder.rglob("*.jsonl.gz")):
    with gzip.open(f, "rt", encoding="utf-8") as fh:
      for line in fh:
        if line.strip():
          yield json.loads(line)


def ours_clusters(out: Path) -> tuple[dict, dict]:
  """{removed id: reason}, {id: the survivor it was removed for} (stars: that is the cluster)."""
  removed, root = {}, {}
  for rec in _read_jsonl_gz(out / shards.REMOVED_DIR):
    if rec.get("reason") in NEAR:
      removed[rec["doc"]["id"]] = rec["reason"]
      root[rec["doc"]["id"]] = root[rec["duplicate_of"]] = rec["duplicate_of"]
  return removed, root


def datatrove_clusters(work: Path, inp: Path, paths: list[Path]) -> tuple[set, dict]:
  """Removed ids (its exclusion writer) and {id: its cluster} for the documents in its clusters
  of two or more (stage 2's band matches joined, as stage 3 joins them), read after the run."""
  removed = {rec["id"] for rec in _read_jsonl_gz(work / "removed")}
  parent: dict = {}

  def find(x):
    while parent.get(x, x) != x:
      parent[x] = parent.get(parent[x], parent[x])
      x = parent[x]
    return x

  for f in sorted((work / "buckets").glob("*.dups")):
    for f1, d1, f2, d2 in struct.iter_unpack("<4I", f.read_bytes()):
      ra, rb = find((f1, d1)), find((f2, d2))
      if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)
  ids = {}   # (task, index of the document in its shard) -> id, as datatrove's reader counts
  for task, path in enumerate(paths):
    docs = shards.read_shard(path, shards.Stats(), name=shards.shard_name(path, inp))
    for k, doc in enumerate(d for d in docs if d["text"]):   # it skips documents without text
      ids[(task, k)] = doc["id"]
  members = set(parent) | set(parent.values())
  return removed, {ids[m]: ids[find(m)] for m in members}


def agreement(ours: set, theirs: set) -> dict:
  both = len(ours & theirs)
  union = len(ours | theirs)
  return {"ours": len(ours), "datatrove": len(theirs), "both": both,
          "jaccard": round(both / union, 4) if union else 1.0,
          "precision_vs_datatrove": round(both / len(ours), 4) if ours else 1.0,
          "recall_vs_datatrove": round(both / len(theirs), 4) if theirs else 1.0}


BANDS = ((0.9, 1.01, ">=0.9"), (0.8, 0.9, "0.8-0.9"), (0.7, 0.8, "0.7-0.8"), (0.0, 0.7, "<0.7"))


def planted_recall(planted: list, pair_jaccard: list, roots: dict[str, dict]) -> dict:
  """Per true-Jaccard band: planted pairs, and how many each side put in one cluster."""
  out = {}
  for lo, hi, label in BANDS:
    pairs = [p for p, j in zip(planted, pair_jaccard) if lo <= j < hi]
    row = {"pairs": len(pairs)}
    for side, root in roots.items():
      row[side] = sum(1 for a, b in pairs if a in root and root.get(b) == root[a])
    out[label] = row
  return out


# ----------------------------------------------------------------------------- driver

def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv[:2] == ["--side", "datatrove"]:
    return datatrove_side(argv[2:])
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sw-news"))
  p.add_argument("--limit-docs", type=int, default=0,
                 help="about N documents of --data, before the planted copies (0: all)")
  p.add_argument("--dup-rate", type=float, default=0.1,
                 help="share of documents given 1-3 planted copies (0: the corpus as it is)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--hash", choices=("sha1", "xxhash"), default="sha1",
                 help="datatrove's n-gram hash (xxhash needs xxhash<4: datatrove issue #508)")
  p.add_argument("--keep", default=None, help="keep the corpus and both outputs in this folder")
  args = p.parse_args(argv)
  from importlib.metadata import version

  from datasketch import MinHashLSH

  from configs import pipeline as pipeline_config
  d = pipeline_config.get_config().dedup
  lsh = MinHashLSH(threshold=d.threshold, num_perm=d.num_perm)
  bands, rows = lsh.b, lsh.r
  dt_version = version("datatrove")

  tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dedup-datatrove-"))
  tmp.mkdir(parents=True, exist_ok=True)
  try:
    inp = tmp / "corpus"
    shutil.rmtree(inp, ignore_errors=True)
    planted = make_corpus(Path(args.data), inp, args.limit_docs, args.dup_rate, args.seed)
    paths = shards.list_shards(inp)
    (tmp / "paths.txt").write_text("".join(shards.shard_name(q, inp) + "\n" for q in paths))
    texts = {doc["id"]: doc["text"] for _, doc in shards.iter_docs(inp)}
    nbytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts.values())
    pair_jaccard = []
    for a, b in planted:
      sa, sb = shingle_set(texts[a], d.shingle), shingle_set(texts[b], d.shingle)
      pair_jaccard.append(len(sa & sb) / len(sa | sb))
    print(f"corpus: {args.data}{f' (about {args.limit_docs} docs)' if args.limit_docs else ''}"
          f" + {len(planted)} planted copies (--dup-rate {args.dup_rate}, seed {args.seed}): "
          f"{len(texts)} docs, {nbytes / 1e6:.1f} MB of text, {len(paths)} shards; "
          f"--workers {args.workers}")
    print(f"matched: word {d.shingle}-grams; {bands} bands x {rows} rows (datasketch's choice "
          f"for threshold {d.threshold}, {d.num_perm} permutations = datatrove num_buckets x "
          f"hashes_per_bucket); ours verifies candidates at signature Jaccard >= {d.threshold} "
          f"and drops exact duplicates first; datatrove {dt_version}: simplify_text + spaCy "
          f"'{DATATROVE_LANGUAGE}' words, {args.hash} 64-bit n-gram hashes, no verification, "
          f"connected components")

    ours_out = tmp / "ours"
    shutil.rmtree(ours_out, ignore_errors=True)
    ours = run_measured([sys.executable, "-m", "data_pipeline.dedup", "--input", str(inp),
                         "--output", str(ours_out), "--workers", str(args.workers),
                         "--threshold", str(d.threshold), "--num-perm", str(d.num_perm),
                         "--shingle", str(d.shingle)], tmp / "ours.log")
    dt_work = tmp / "datatrove"
    shutil.rmtree(dt_work, ignore_errors=True)
    dt = run_measured([sys.executable, str(Path(__file__).resolve()), "--side", "datatrove",
                       "--input", str(inp), "--paths-file", str(tmp / "paths.txt"),
                       "--work", str(dt_work), "--workers", str(args.workers),
                       "--shingle", str(d.shingle), "--bands", str(bands), "--rows", str(rows),
                       "--hash", args.hash], tmp / "datatrove.log")
    dt["stages_s"] = {k: round(v, 2) for k, v in
                      json.loads((dt_work / "stage_times.json").read_text()).items()}

    o_removed, o_root = ours_clusters(ours_out)
    t_removed, t_root = datatrove_clusters(dt_work, inp, paths)
    rem = agreement(set(o_removed), t_removed)
    clu = agreement(set(o_root), set(t_root))
    by_reason = {r: sum(v == r for v in o_removed.values()) for r in NEAR}
    caught = {r: sum(1 for i, v in o_removed.items() if v == r and i in t_removed) for r in NEAR}
    in_planted = {x for pair in planted for x in pair}
    outside = {"ours": len(set(o_removed) - in_planted), "datatrove": len(t_removed - in_planted)}
    recall = planted_recall(planted, pair_jaccard, {"ours": o_root, "datatrove": t_root})
    mb = nbytes / 1e6
    for name, s in (("ours", ours), (f"datatrove {dt_version}", dt)):
      stages = (" (" + ", ".join(f"{k} {s['stages_s'][k]:.1f} s" for k in STAGES) + ")"
                if "stages_s" in s else "")
      print(f"{name}: {s['wall_s']:.2f} s ({mb / s['wall_s']:.2f} MB/s){stages}, peak memory "
            f"{s['peak_pss_mb']:.0f} MB PSS over {s['processes']} processes, largest process "
            f"{s['peak_rss_mb']:.0f} MB RSS")
    print(f"ours/datatrove time: {ours['wall_s'] / dt['wall_s']:.2f}x")
    print(f"ours/datatrove peak memory: {ours['peak_pss_mb'] / dt['peak_pss_mb']:.2f}x")
    print(f"removed: ours {rem['ours']}, datatrove {rem['datatrove']}, both {rem['both']}, "
          f"jaccard {rem['jaccard']} (ours exact {by_reason['exact_duplicate']}, near "
          f"{by_reason['near_duplicate']}; datatrove removes {caught['exact_duplicate']} and "
          f"{caught['near_duplicate']} of them)")
    print(f"in duplicate clusters: ours {clu['ours']}, datatrove {clu['datatrove']}, both "
          f"{clu['both']}, jaccard {clu['jaccard']}")
    print(f"removed outside the planted pairs: ours {outside['ours']}, "
          f"datatrove {outside['datatrove']}")
    print("planted pairs in one cluster, by true word-5-gram Jaccard: " + "; ".join(
        f"{k}: ours {v['ours']}/{v['pairs']}, datatrove {v['datatrove']}/{v['pairs']}"
        for k, v in recall.items()))
    res = {"data": args.data, "limit_docs": args.limit_docs, "dup_rate": args.dup_rate,
           "seed": args.seed, "docs": len(texts), "planted": len(planted), "MB": round(mb, 2),
           "shards": len(paths), "workers": args.workers, "datatrove_version": dt_version,
           "hash": args.hash, "shingle": d.shingle, "bands": bands, "rows": rows,
           "threshold": d.threshold, "num_perm": d.num_perm,
           "ours": {k: round(v, 2) if isinstance(v, float) else v for k, v in ours.items()},
           "datatrove": {k: round(v, 2) if isinstance(v, float) else v for k, v in dt.items()},
           "time_ratio": round(ours["wall_s"] / dt["wall_s"], 3),
           "memory_ratio": round(ours["peak_pss_mb"] / dt["peak_pss_mb"], 3),
           "removed": {**rem, "ours_by_reason": by_reason, "datatrove_of_ours": caught,
                       "outside_planted": outside},
           "clustered": clu, "planted_recall": recall}
    print(json.dumps(res))
  finally:
    if not args.keep:
      shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
