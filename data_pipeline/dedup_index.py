"""Dedup pass 2 in bounded memory: which documents are duplicates, decided from files on disk.

The rule is the one a single in-memory datasketch `MinHashLSH` over the whole corpus gives: in
input order, a document is an exact duplicate of an earlier survivor with its exact key, else a
near duplicate of the earliest survivor among its LSH candidates whose signature Jaccard estimate
reaches the threshold (earlier runs' survivors, from `--index`, rank after this run's, by id),
else it survives and becomes a candidate itself. A document's decision can only depend on the
documents it shares an LSH band with, transitively: its component of the band graph. So:

1. buckets: each document's `b` band keys (a 64-bit hash of its band of the signature, salted by
   the band) go to `P` partition files by key, with the document's number `g` (earlier runs'
   survivors first, then this run's documents in input order);
2. components: each partition is sorted by key and equal keys are joined in a union-find over all
   documents: one int32 per document (and a few such arrays while it is resolved) is the only
   memory that grows with the corpus;
3. groups: documents in components of two or more, with their signatures, go to `C` group files
   by component; a document alone in its component survives with cluster size 1;
4. decisions: each group is decided in `g` order with a fresh datasketch `MinHashLSH` (its own
   band matching, queries and verification), then written as one decision file per shard.

`P` and `C` follow `dedup.memory_mb`, so a partition or a group fits that budget at any corpus
size. A 64-bit collision of two band keys can only join two components, never decide anything.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from data_pipeline import shards

WORK_DIR = "work"   # under the state folder: partitions and groups, deleted when decided
BUCKET = np.dtype([("k", "<u8"), ("g", "<i8")])
_BUCKET_COST = 48     # bytes per band key while a partition is sorted (records, keys, order)
_GROUP_COST = 4096    # bytes per grouped document while decided (LSH tables, signature, id)
_MIX = np.uint64(0x9E3779B97F4A7C15)
REASONS = ("survivor", "exact_duplicate", "near_duplicate")


class SignatureFile(NamedTuple):
  """A file of documents in `g` order: this run's shard signatures or an earlier run's."""
  path: Path
  earlier: bool          # an earlier run's survivor (ranks after this run's, no exact key)
  shard: str | None      # this run's shard name


def read_source(path: Path) -> tuple[list[str], np.ndarray | None, np.ndarray]:
  """(ids, exact keys [n, 16] uint8 or None, signatures [n, P] uint32) of a signature file.

  Two layouts: pass 1's (ids as one UTF-8 blob with their lengths, keys) and the index folder's
  first one (`ids` as a unicode array, no keys), which older index folders still hold."""
  with np.load(path) as z:
    if "id_bytes" not in z:
      return [str(i) for i in z["ids"]], None, z["sigs"]
    blob, ends = z["ids"].tobytes(), np.cumsum(z["id_bytes"]).tolist()
    ids = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip([0] + ends[:-1], ends)]
    return ids, z["keys"], z["sigs"]


def read_signatures(path: Path) -> np.ndarray:
  """Only the signatures [n, P] uint32 of a signature file (no ids decoded)."""
  with np.load(path) as z:
    return z["sigs"]


def write_source(path: Path, ids: list[str], keys: np.ndarray, sigs: np.ndarray) -> None:
  enc = [i.encode("utf-8", "surrogatepass") for i in ids]   # ids exactly, any characters
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "wb") as fh:
    np.savez(fh, ids=np.frombuffer(b"".join(enc), np.uint8),
             id_bytes=np.array([len(e) for e in enc], np.int64),
             keys=np.asarray(keys, np.uint8).reshape(-1, 16), sigs=sigs)
  tmp.replace(path)


def band_keys(sig: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
  """[n, b] uint64: a salted hash of each band of each signature (equal bands, equal keys)."""
  out = np.empty((len(sig), len(ranges)), np.uint64)
  with np.errstate(over="ignore"):
    for j, (lo, hi) in enumerate(ranges):
      h = np.full(len(sig), np.uint64(j + 1) * _MIX, np.uint64)
      for col in range(lo, hi):
        h = (h ^ sig[:, col].astype(np.uint64)) * np.uint64(0x100000001B3)
      h ^= h >> np.uint64(33)   # murmur3 fmix64: spread the bits the partition is taken from
      h *= np.uint64(0xFF51AFD7ED558CCD)
      h ^= h >> np.uint64(33)
      out[:, j] = h
  return out


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
  """Roots of the nodes x, compressing their paths."""
  start, x = x, parent[x]
  while True:
    px = parent[x]
    if np.array_equal(px, x):
      parent[start] = x
      return x
    x = px


def union(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
  """Joins the components of u[i] and v[i] for every i (the lower root becomes the root)."""
  while len(u):
    ru, rv = _find(parent, u), _find(parent, v)
    lo, hi = np.minimum(ru, rv), np.maximum(ru, rv)
    apart = lo != hi
    u, v = lo[apart], hi[apart]
    parent[v] = u   # of several writes to one root one wins; the others go round again


def roots(parent: np.ndarray) -> np.ndarray:
  while True:
    grand = parent[parent]
    if np.array_equal(grand, parent):
      return parent
    parent = grand


class Plan(NamedTuple):
  sources: list[SignatureFile]
  offsets: list[int]     # g of each source's first document; offsets[-1] = all documents
  ranges: list[tuple[int, int]]


def _count(source: SignatureFile) -> int:
  with np.load(source.path) as z:
    return len(z["id_bytes"] if "id_bytes" in z else z["ids"])


def plan(sources: list[SignatureFile], threshold: float, num_perm: int) -> Plan:
  offsets = np.cumsum([0] + [_count(s) for s in sources]).tolist()
  return Plan(sources, offsets, MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges)


def _partitions(p: Plan, work: Path, memory_bytes: int) -> list[Path]:
  """Step 1: every band key with its document to one of P partition files."""
  n_keys = p.offsets[-1] * len(p.ranges)
  parts = max(1, math.ceil(n_keys * _BUCKET_COST / memory_bytes))
  files = [work / f"buckets-{i:05d}.bin" for i in range(parts)]
  handles = [open(f, "wb") for f in files]
  try:
    for s, g0 in zip(p.sources, p.offsets):
      sig = read_signatures(s.path)
      rec = np.empty((len(sig), len(p.ranges)), BUCKET)
      rec["k"] = band_keys(sig, p.ranges)
      rec["g"] = (g0 + np.arange(len(sig)))[:, None]
      rec = rec.reshape(-1)
      which = rec["k"] % np.uint64(parts)
      for i, h in enumerate(handles):
        rec[which == i].tofile(h)
  finally:
    for h in handles:
      h.close()
  return files


def components(p: Plan, work: Path, memory_bytes: int) -> np.ndarray:
  """Steps 1-2: the root of every document's component, [all documents] int32 (int64 past 2^31)."""
  n = p.offsets[-1]
  parent = np.arange(n, dtype=np.int32 if n < 2 ** 31 else np.int64)
  for f in _partitions(p, work, memory_bytes):
    rec = np.fromfile(f, BUCKET)
    f.unlink()
    order = np.argsort(rec["k"], kind="stable")
    k, g = rec["k"][order], rec["g"][order]
    del rec, order
    same = np.flatnonzero(k[1:] == k[:-1]) + 1       # positions whose key equals the one before
    union(parent, g[same - 1], g[same])
  return roots(parent)


def group_row(num_perm: int) -> np.dtype:
  """A grouped document: its number, exact key, origin, id length (id in a blob), signature."""
  return np.dtype([("g", "<i8"), ("key", "V16"), ("earlier", "u1"), ("id_len", "<u4"),
                   ("sig", "<u4", (num_perm,))])


def _group_files(p: Plan, root: np.ndarray, work: Path, memory_bytes: int,
                 num_perm: int) -> list[tuple[Path, Path]]:
  """Step 3: documents of components of 2+ into C group files (rows + id blob), in g order."""
  size = np.bincount(root)
  grouped = size[root] > 1
  parts = max(1, math.ceil(int(grouped.sum()) * _GROUP_COST / memory_bytes))
  files = [(work / f"group-{i:05d}.bin", work / f"group-{i:05d}.ids") for i in range(parts)]
  handles = [(open(a, "wb"), open(b, "wb")) for a, b in files]
  dtype = group_row(num_perm)
  try:
    for s, g0, g1 in zip(p.sources, p.offsets, p.offsets[1:]):
      g = np.arange(g0, g1)
      take = np.flatnonzero(grouped[g])
      if not len(take):
        continue
      ids, keys, sig = read_source(s.path)
      enc = [ids[i].encode("utf-8", "surrogatepass") for i in take]
      row = np.zeros(len(take), dtype)
      row["g"], row["sig"], row["earlier"] = g[take], sig[take], s.earlier
      row["id_len"] = [len(e) for e in enc]
      if keys is not None:
        row["key"] = np.ascontiguousarray(keys[take]).view("V16").reshape(-1)
      which = root[g[take]] % parts
      for i, (rows, blob) in enumerate(handles):
        pick = np.flatnonzero(which == i)
        row[pick].tofile(rows)
        blob.write(b"".join(enc[j] for j in pick))
  finally:
    for a, b in handles:
      a.close()
      b.close()
  return files


class Tally:
  """What the decisions add up to (stats.json's `dedup`)."""

  def __init__(self):
    self.exact = self.near = self.earlier = self.clusters = 0
    self.largest = 0

  def summary(self, survivors: int) -> dict:
    return {"exact_duplicates": self.exact, "near_duplicates": self.near,
            "near_duplicates_of_earlier_runs": self.earlier,
            "clusters_with_duplicates": self.clusters,
            "largest_cluster": max(self.largest, 1 if survivors else 0)}


def decide_group(rows: np.ndarray, ids: list[str], threshold: float, num_perm: int, seed: int,
                 tally: Tally) -> Iterator[tuple[int, list]]:
  """Step 4 for one group: (g, decision) of each of this run's documents, in g order.

  A decision is ["survivor", cluster size] or [reason, id of the survivor, jaccard]."""
  lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
  exact: dict[bytes, int] = {}      # exact key -> position of the survivor
  cluster: dict[int, int] = {}      # position of a survivor of this run -> cluster size
  out: list[tuple[int, list]] = []
  for pos, row in enumerate(rows):
    sig = row["sig"]
    m = LeanMinHash(seed=seed, hashvalues=sig, scheme="affine32")
    if row["earlier"]:
      lsh.insert(pos, m, check_duplication=False)
      continue
    key = row["key"].tobytes()
    s = exact.get(key)
    if s is not None:
      tally.exact += 1
      cluster[s] += 1
      out.append((int(row["g"]), ["exact_duplicate", ids[s], 1.0]))
      continue
    best = None   # ((0, position) for this run's survivors, (1, id) for earlier runs', ...)
    for c in lsh.query(m):
      j = float(np.mean(rows["sig"][c] == sig))
      rank = (1, ids[c]) if rows["earlier"][c] else (0, c)
      if j >= threshold and (best is None or rank < best[0]):
        best = (rank, c, j)
    if best is not None:
      _, c, j = best
      tally.near += 1
      if rows["earlier"][c]:
        tally.earlier += 1
      else:
        cluster[c] += 1
      out.append((int(row["g"]), ["near_duplicate", ids[c], round(j, 4)]))
      continue
    exact[key] = pos
    cluster[pos] = 1
    lsh.insert(pos, m, check_duplication=False)
    out.append((int(row["g"]), None))
  sizes = {int(rows["g"][pos]): n for pos, n in cluster.items()}
  tally.clusters += sum(n > 1 for n in sizes.values())
  tally.largest = max([tally.largest, *sizes.values()])
  for g, d in out:
    yield g, d if d is not None else ["survivor", sizes[g]]


def read_group(rows_file: Path, ids_file: Path, num_perm: int) -> tuple[np.ndarray, list[str]]:
  rows = np.fromfile(rows_file, group_row(num_perm))
  blob, ends = ids_file.read_bytes(), np.cumsum(rows["id_len"]).tolist()
  return rows, [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip([0] + ends[:-1], ends)]


def decide(p: Plan, state: Path, *, threshold: float, num_perm: int, seed: int,
           memory_mb: int) -> dict:
  """Steps 1-4: `state/<shard>.json` for each of this run's shards; returns the summary."""
  work = state / WORK_DIR
  shutil.rmtree(work, ignore_errors=True)   # a pass 2 killed before: start it again
  work.mkdir(parents=True)
  memory = memory_mb << 20
  root = components(p, work, memory)
  groups = _group_files(p, root, work, memory, num_perm)
  del root
  tally = Tally()
  by_shard: dict[int, list] = {}   # source number -> [(g, decision)], spilled per group
  for k, (rows_file, ids_file) in enumerate(groups):
    rows, ids = read_group(rows_file, ids_file, num_perm)
    for g, d in decide_group(rows, ids, threshold, num_perm, seed, tally):
      by_shard.setdefault(int(np.searchsorted(p.offsets, g, side="right")) - 1, []).append((g, d))
    for src, decided in by_shard.items():   # one small file per (shard, group): bounded memory
      shards.write_json(work / f"{src:06d}-{k:05d}.json", decided)
    by_shard.clear()
  dropped = 0
  for src, shard in enumerate(s.shard for s in p.sources):
    if shard is None:
      continue
    decided = {}
    for f in sorted(work.glob(f"{src:06d}-*.json")):
      decided.update({g - p.offsets[src]: d for g, d in json.loads(f.read_text())})
    dropped += sum(d[0] != "survivor" for d in decided.values())
    shards.write_json(state / (shard + ".json"), {
        "docs": p.offsets[src + 1] - p.offsets[src],
        "decisions": {str(i): decided[i] for i in sorted(decided)
                      if decided[i] != ["survivor", 1]}})
    shards.event("decide_shard_done", shard=shard, index=src)
  run_docs = sum(b - a for s, a, b in zip(p.sources, p.offsets, p.offsets[1:]) if not s.earlier)
  shutil.rmtree(work, ignore_errors=True)
  return tally.summary(run_docs - dropped)
