"""Phase 3: exact then MinHash-LSH near-duplicate removal, one deterministic survivor per cluster.

  swahili100 dedup --input data/cleaned --output data/deduped --threshold 0.8 --workers 2
  swahili100 dedup ... --index redis://localhost:6379/0   # persistent index across runs

Pass 1 (worker processes over shards): per document a 16-byte exact key (blake2b of the
lower-cased, whitespace-collapsed text) and a MinHash signature of its word `shingle`-grams,
computed in batches with numpy using datasketch's own "affine32" permutations and fmix pre-mix,
so the values equal `datasketch.MinHash(scheme="affine32").update_batch(...)` on the same shingle
hashes and feed `MinHashLSH` as `LeanMinHash` objects.
Pass 2 (main process, input order): exact duplicates of an earlier document are dropped
(`exact_duplicate`); otherwise the LSH is queried, candidates are verified with the signature
Jaccard estimate >= threshold, and a match drops the document (`near_duplicate`) in favour of
the earliest survivor. Only survivors enter the index, so each cluster is a star around its
first document in input order. Pass 3 (shard runner): survivors are written with
`dup_cluster_size` (for later upsampling); removed documents record `duplicate_of` and `jaccard`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import re
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from configs import data as data_config
from data_pipeline import shards

_WORD = re.compile(r"\w+")
_SHINGLE_MUL = np.uint32(0x9E3779B1)
_CHUNK_SHINGLES = 1 << 16
STATE_DIR = ".dedup"


def exact_key(text: str) -> bytes:
  return hashlib.blake2b(" ".join(text.lower().split()).encode("utf-8", "surrogatepass"),
                         digest_size=16).digest()


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """datasketch's affine32 permutation parameters (a odd, b), each shape [num_perm] uint32."""
  from datasketch import MinHash
  a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
  return a.astype(np.uint32), b.astype(np.uint32)


def fmix32(h: np.ndarray) -> np.ndarray:
  """MurmurHash3 32-bit finalizer (datasketch's pre-mix for affine32)."""
  from datasketch.minhash import _fmix
  return _fmix(h, 32)


class Shingler:
  """Words -> 32-bit hashes (crc32, cached) -> hashes of word n-grams (uint32, vectorized)."""

  def __init__(self, n: int):
    self.n = n
    self.cache: dict[str, int] = {}

  def __call__(self, text: str) -> np.ndarray:
    cache = self.cache
    words = _WORD.findall(text.lower())
    hs = []
    for w in words:
      h = cache.get(w)
      if h is None:
        h = cache[w] = zlib.crc32(w.encode("utf-8", "surrogatepass"))
      hs.append(h)
    if len(cache) > 2_000_000:
      cache.clear()
    wh = np.asarray(hs, dtype=np.uint32)
    if len(wh) == 0:
      return np.zeros(1, dtype=np.uint32)
    n = min(self.n, len(wh))
    m = len(wh) - n + 1
    out = wh[:m].copy()
    with np.errstate(over="ignore"):
      for j in range(1, n):
        out = out * _SHINGLE_MUL + wh[j:j + m]
    return out


def minhash_batch(shingles: list[np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Signatures [len(shingles), num_perm] uint32 for a list of shingle-hash arrays."""
  sig = np.empty((len(shingles), len(a)), dtype=np.uint32)
  i = 0
  while i < len(shingles):   # chunks of ~_CHUNK_SHINGLES shingles keep memory bounded
    j, total = i, 0
    while j < len(shingles) and (total == 0 or total + len(shingles[j]) <= _CHUNK_SHINGLES):
      total += len(shingles[j])
      j += 1
    hv = fmix32(np.concatenate(shingles[i:j]))
    with np.errstate(over="ignore"):
      phv = hv[:, None] * a[None, :] + b[None, :]            # [S, P] uint32 wraparound
    starts = np.cumsum([0] + [len(s) for s in shingles[i:j - 1]])
    sig[i:j] = np.minimum.reduceat(phv, starts, axis=0)
    i = j
  return sig


def _shard_signatures(args):
  path, name, max_line_bytes, shingle, num_perm, seed, batch = args
  a, b = permutations(num_perm, seed)
  shingler = Shingler(shingle)
  stats = shards.Stats()
  ids, keys, sigs, pending, nbytes = [], [], [], [], 0
  for doc in shards.read_shard(path, stats, name=name, max_line_bytes=max_line_bytes):
    ids.append(doc["id"])
    keys.append(exact_key(doc["text"]))
    pending.append(shingler(doc["text"]))
    nbytes += shards.text_bytes(doc)
    if len(pending) >= batch:
      sigs.append(minhash_batch(pending, a, b))
      pending = []
  if pending:
    sigs.append(minhash_batch(pending, a, b))
  sig = np.concatenate(sigs) if sigs else np.zeros((0, num_perm), np.uint32)
  return name, ids, keys, sig, nbytes


def _make_lsh(threshold: float, num_perm: int, index: str | None):
  from datasketch import MinHashLSH
  if not index:
    return MinHashLSH(threshold=threshold, num_perm=num_perm)
  from urllib.parse import urlparse
  u = urlparse(index)
  if u.scheme != "redis":
    raise ValueError(f"--index {index!r}: only redis://host:port/db is supported")
  cfg = {"type": "redis", "basename": f"swahili100-dedup-{threshold}-{num_perm}".encode(),
         "redis": {"host": u.hostname or "localhost", "port": u.port or 6379,
                   "db": int((u.path or "/0").strip("/") or 0)}}
  return MinHashLSH(threshold=threshold, num_perm=num_perm, storage_config=cfg)


def decide(input: Path, state: Path, *, threshold: float, num_perm: int, shingle: int, seed: int,
           batch: int, workers: int, max_line_bytes: int, index: str | None = None) -> dict:
  """Passes 1-2: writes one decision list per shard under `state`; returns summary counts."""
  from datasketch import LeanMinHash
  from tqdm import tqdm
  paths = shards.list_shards(input)
  names = [shards.shard_name(p, input) for p in paths]
  tasks = [(p, n, max_line_bytes, shingle, num_perm, seed, batch) for p, n in zip(paths, names)]
  lsh = _make_lsh(threshold, num_perm, index)
  exact: dict[bytes, int] = {}       # exact key -> survivor number
  survivors: list[tuple[str, str, int]] = []   # survivor number -> (id, shard, position)
  sigs: dict[int, np.ndarray] = {}   # survivor number -> signature (for verification)
  cluster: list[int] = []
  decisions: dict[str, list] = {}
  n_exact = n_near = 0
  t0, t_sig = time.time(), 0.0
  bar = tqdm(total=len(tasks), desc="dedup signatures", unit="shard", file=sys.stderr,
             disable=None)
  if workers > 1 and len(tasks) > 1:
    pool = multiprocessing.get_context("fork").Pool(min(workers, len(tasks)))
    results = pool.imap(_shard_signatures, tasks)   # ordered: deterministic for any N
  else:
    pool, results = None, map(_shard_signatures, tasks)
  try:
    for name, ids, keys, sig, _ in results:
      bar.update(1)
      acts: list = []
      for pos, (doc_id, key) in enumerate(zip(ids, keys)):
        s = exact.get(key)
        if s is not None:
          n_exact += 1
          cluster[s] += 1
          acts.append({"drop": "exact_duplicate", "of": survivors[s][0], "jaccard": 1.0})
          continue
        m = LeanMinHash(seed=seed, hashvalues=sig[pos], scheme="affine32")
        best, best_j = None, 0.0
        for c in lsh.query(m):
          if isinstance(c, int):
            j = float(np.mean(sigs[c] == sig[pos]))
            if j >= threshold and (best is None or (isinstance(best, int) and c < best)):
              best, best_j = c, j
          elif best is None:   # a document of an earlier run (persistent index): unverified
            best, best_j = c, threshold
        if best is not None:
          n_near += 1
          if isinstance(best, int):
            cluster[best] += 1
            of = survivors[best][0]
          else:
            of = best
          acts.append({"drop": "near_duplicate", "of": of, "jaccard": round(best_j, 4)})
          continue
        s = len(survivors)
        survivors.append((doc_id, name, pos))
        cluster.append(1)
        exact[key] = s
        sigs[s] = sig[pos]
        lsh.insert(doc_id if index else s, m, check_duplication=False)
        acts.append(s)
      decisions[name] = acts
  finally:
    bar.close()
    if pool is not None:
      pool.close()
      pool.join()
  state.mkdir(parents=True, exist_ok=True)
  for name, acts in decisions.items():
    out = [{"cluster": cluster[a]} if isinstance(a, int) else a for a in acts]
    p = state / (name + ".json")
    p.parent.mkdir(parents=True, exist_ok=True)
    shards.write_json(p, out)
  summary = {"exact_duplicates": n_exact, "near_duplicates": n_near,
             "clusters_with_duplicates": sum(c > 1 for c in cluster),
             "decide_seconds": round(time.time() - t0, 2)}
  shards.write_json(state / "complete.json", summary)
  return summary


class Apply:
  """Per-document function of pass 3: replays the decisions of one shard in order."""

  def __init__(self, state: Path):
    self.state = state
    self.acts, self.i = [], 0

  def start_shard(self, name: str) -> None:
    self.acts = json.loads((self.state / (name + ".json")).read_text())
    self.i = 0

  def __call__(self, doc: dict) -> dict | shards.Drop:
    a = self.acts[self.i]
    self.i += 1
    if "drop" in a:
      return shards.Drop(a["drop"], {"duplicate_of": a["of"], "jaccard": a["jaccard"]})
    doc["dup_cluster_size"] = a["cluster"]
    return doc


def main(argv: list[str] | None = None) -> int:
  cfg = data_config.get_config().dedup
  p = argparse.ArgumentParser(prog="swahili100 dedup", description=__doc__.split("\n")[0])
  shards.add_common_args(p)
  p.add_argument("--threshold", type=float, default=cfg.threshold, help="LSH Jaccard threshold")
  p.add_argument("--num-perm", type=int, default=cfg.num_perm)
  p.add_argument("--shingle", type=int, default=cfg.shingle, help="word n-gram size")
  p.add_argument("--index", default=None, help="redis://host:port/db persistent LSH index")
  args = p.parse_args(argv)
  inp, out = Path(args.input), Path(args.output)
  state = out / STATE_DIR
  conf = {"threshold": args.threshold, "num_perm": args.num_perm, "shingle": args.shingle,
          "seed": cfg.seed, "batch": cfg.batch, "index": args.index, "scheme": "affine32"}
  done = state / "complete.json"
  if done.exists():   # rerun: decisions are final; only unfinished shards are rewritten
    summary = json.loads(done.read_text())
  else:
    summary = decide(inp, state, threshold=args.threshold, num_perm=args.num_perm,
                     shingle=args.shingle, seed=cfg.seed, batch=cfg.batch, workers=args.workers,
                     max_line_bytes=args.max_line_bytes, index=args.index)
  stats = shards.run_phase("dedup", inp, out, Apply(state), workers=args.workers,
                           max_line_bytes=args.max_line_bytes, config=conf,
                           extra_stats={"dedup": summary})
  print(shards.summary(stats), file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
