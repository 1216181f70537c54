"""Phase 3: exact then MinHash-LSH near-duplicate removal, one deterministic survivor per cluster.

  swahili100 dedup --input data/cleaned --output data/deduped --threshold 0.8 --workers 2
  swahili100 dedup ... --index data/dedup-index           # persistent index across runs (folder)
  swahili100 dedup ... --index redis://localhost:6379/0   # ... or datasketch's Redis storage

Pass 1 (`shards.run_units` over shards in worker processes, resumable: one
`.dedup/signatures/<shard>.npz` and marker per shard, deleted once the decisions are final): per
document a 16-byte exact key (blake2b of the lower-cased, whitespace-collapsed text) and a MinHash
signature of its word `shingle`-grams, computed in batches with numpy using datasketch's own
"affine32" permutations and fmix pre-mix, so the values equal
`datasketch.MinHash(scheme="affine32").update_batch(...)` on the same shingle hashes and feed
`MinHashLSH` as `LeanMinHash` objects.
Pass 2 (main process, input order, each shard as soon as its signatures and those of the shards
before it are in): exact duplicates of an earlier document are dropped
(`exact_duplicate`); otherwise the LSH is queried, candidates are verified with the signature
Jaccard estimate >= threshold, and a match drops the document (`near_duplicate`) in favour of
the earliest survivor. Only survivors enter the index, so each cluster is a star around its
first document in input order. With `--index`, survivors of earlier runs are candidates too
(verified with their stored signatures); a match is dropped with `duplicate_of` = the earlier
id. Pass 3 (shard runner): survivors are written with
`dup_cluster_size` (for later upsampling); removed documents record `duplicate_of` and `jaccard`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from data_pipeline import shards

_SHINGLE_MUL = np.uint32(0x9E3779B1)
_BATCH_CHARS = 1 << 20   # a signature batch ends at `batch` docs or 1M characters (bounded memory)
_CHUNK_SHINGLES = 1 << 10   # [1024, num_perm] uint32 = 512 KiB: stays in L2 (6x faster than 64K)
STATE_DIR = ".dedup"
SIG_DIR = "signatures"   # under STATE_DIR: pass 1's output per shard, deleted once decided


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


# Words: runs of ASCII letters/digits/_ and of non-ASCII characters, except the common Unicode
# punctuation below (after lower-casing; on Swahili text this is the `\w+` segmentation for all but
# 4 of 7,089 sw-news documents). Each word is hashed by a polynomial hash over its UTF-8 bytes,
# computed for a whole batch at once from prefix sums (numpy, no Python loop over words).
_WORD_BYTE = np.zeros(256, bool)
_WORD_BYTE[list(b"abcdefghijklmnopqrstuvwxyz0123456789_")] = True
_WORD_BYTE[0x80:] = True
_PUNCT_E2_80 = np.array([0x93, 0x94, 0x98, 0x99, 0x9A, 0x9C, 0x9D, 0x9E, 0xA2, 0xA6], np.uint8)
_PUNCT_C2 = np.array([0xA0, 0xAB, 0xB7, 0xBB], np.uint8)   # NBSP « · »
_P = 0x100000001B3                   # odd, so invertible mod 2^64
_POW: dict[str, np.ndarray] = {}     # P^k and P^-k mod 2^64, grown on demand


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
  if len(_POW.get("p", ())) < n:
    m = max(n, 2 * len(_POW.get("p", ())), 1 << 16)
    for key, base in (("p", _P), ("q", pow(_P, -1, 1 << 64))):
      a = np.empty(m, np.uint64)
      a[0] = 1
      with np.errstate(over="ignore"):
        a[1:] = np.cumprod(np.full(m - 1, base, np.uint64))
      _POW[key] = a
  return _POW["p"][:n], _POW["q"][:n]


def word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """(uint32 hash of every word of every text, index of its text), in order."""
  enc = [t.lower().encode("utf-8", "surrogatepass") for t in texts]
  buf = np.frombuffer(b"\x00".join(enc), np.uint8)   # NUL separates texts (not a word byte)
  n = len(buf)
  isw = _WORD_BYTE[buf]
  if n >= 3:   # U+2013..U+2026 dashes, quotes, bullet, ellipsis: E2 80 xx
    k = np.flatnonzero((buf[:-2] == 0xE2) & (buf[1:-1] == 0x80) & np.isin(buf[2:], _PUNCT_E2_80))
    isw[k] = isw[k + 1] = isw[k + 2] = False
  if n >= 2:
    k = np.flatnonzero((buf[:-1] == 0xC2) & np.isin(buf[1:], _PUNCT_C2))
    isw[k] = isw[k + 1] = False
  edge = np.diff(isw.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
  starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)   # words = [s, e)
  p, q = _powers(n + 1)
  csum = np.zeros(n + 1, np.uint64)
  with np.errstate(over="ignore"):
    np.cumsum(buf.astype(np.uint64) * p[:n], out=csum[1:])
    h = (csum[ends] - csum[starts]) * q[starts]   # sum_k b_k P^(k-s): independent of position
  wh = (h >> np.uint64(32)).astype(np.uint32) ^ h.astype(np.uint32)
  text_start = np.cumsum([0] + [len(e) + 1 for e in enc[:-1]])
  return wh, np.searchsorted(text_start, starts, side="right") - 1


def shingle_batch(texts: list[str], n: int) -> list[np.ndarray]:
  """uint32 hashes of the word n-grams of each text (all words if fewer than n; [0] if none)."""
  wh, wdoc = word_hashes(texts)
  counts = np.bincount(wdoc, minlength=len(texts))
  m = len(wh) - n + 1
  if m > 0:
    sh = wh[:m].copy()
    with np.errstate(over="ignore"):
      for j in range(1, n):
        sh = sh * _SHINGLE_MUL + wh[j:j + m]
    same = wdoc[:m] == wdoc[n - 1:]   # n-grams that do not cross two texts
    sh, sdoc = sh[same], wdoc[:m][same]
  else:
    sh, sdoc = np.zeros(0, np.uint32), np.zeros(0, np.int64)
  parts = np.split(sh, np.cumsum(np.bincount(sdoc, minlength=len(texts)))[:-1])
  first = np.cumsum(counts) - counts
  for i in np.flatnonzero(counts < n):   # short texts: one shingle of all their words
    w = wh[first[i]:first[i] + counts[i]]
    s = w[:1].copy() if len(w) else np.zeros(1, np.uint32)
    with np.errstate(over="ignore"):
      for j in range(1, len(w)):
        s = s * _SHINGLE_MUL + w[j:j + 1]
    parts[i] = s
  return parts


def minhash_batch(shingles: list[np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Signatures [len(shingles), num_perm] uint32 for a list of shingle-hash arrays.

  Documents are taken in chunks of ~_CHUNK_SHINGLES shingles: the [S, P] block of permuted
  hashes (multiply-add in place, uint32 wraparound) stays in cache and memory stays bounded.
  """
  sig = np.empty((len(shingles), len(a)), dtype=np.uint32)
  offs = np.concatenate([[0], np.cumsum([len(s) for s in shingles])])
  hv_all = fmix32(np.concatenate(shingles)) if shingles else np.zeros(0, np.uint32)
  buf = np.empty((_CHUNK_SHINGLES, len(a)), np.uint32)
  i = 0
  while i < len(shingles):
    j = max(i + 1, int(np.searchsorted(offs, offs[i] + _CHUNK_SHINGLES, side="right")) - 1)
    lo, hi = offs[i], offs[j]
    if hi - lo > len(buf):   # one document longer than a chunk
      buf = np.empty((hi - lo, len(a)), np.uint32)
    phv = buf[:hi - lo]
    np.multiply(hv_all[lo:hi, None], a[None, :], out=phv)
    np.add(phv, b[None, :], out=phv)
    sig[i:j] = np.minimum.reduceat(phv, offs[i:j] - lo, axis=0)
    i = j
  return sig


def _shard_signatures(args):
  path, name, max_line_bytes, shingle, num_perm, seed, batch = args
  a, b = permutations(num_perm, seed)
  stats = shards.Stats()
  ids, keys, sigs, pending, nbytes = [], [], [], [], 0
  for doc in shards.read_shard(path, stats, name=name, max_line_bytes=max_line_bytes):
    ids.append(doc["id"])
    keys.append(exact_key(doc["text"]))
    pending.append(doc["text"])
    nbytes += len(doc["text"])
    if len(pending) >= batch or nbytes >= _BATCH_CHARS:
      sigs.append(minhash_batch(shingle_batch(pending, shingle), a, b))
      pending, nbytes = [], 0
  if pending:
    sigs.append(minhash_batch(shingle_batch(pending, shingle), a, b))
  sig = np.concatenate(sigs) if sigs else np.zeros((0, num_perm), np.uint32)
  return name, ids, keys, sig


def _signature_unit(args) -> dict:
  """Pass 1 unit: one shard's ids, exact keys and signatures -> `<folder>/<shard>.npz`."""
  *shard_args, folder, key = args
  name, ids, keys, sig = _shard_signatures(tuple(shard_args))
  enc = [i.encode("utf-8", "surrogatepass") for i in ids]   # ids exactly, any characters
  f = folder / (name + ".npz")
  f.parent.mkdir(parents=True, exist_ok=True)
  tmp = f.with_name(f.name + ".tmp")
  with open(tmp, "wb") as fh:
    np.savez(fh, ids=np.frombuffer(b"".join(enc), np.uint8),
             id_bytes=np.array([len(e) for e in enc], np.int64),
             keys=np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 16), sigs=sig)
  os.replace(tmp, f)
  return {"docs": len(ids), "run_key": key}


def _load_signatures(path: Path) -> tuple[list[str], list[bytes], np.ndarray]:
  with np.load(path) as z:
    blob, ends = z["ids"].tobytes(), np.cumsum(z["id_bytes"]).tolist()
    ids = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip([0] + ends[:-1], ends)]
    return ids, [k.tobytes() for k in z["keys"]], z["sigs"]


class LocalIndex:
  """Persistent index in a folder: one `runs/<run key>.npz` (survivor ids + signatures) per run.

  A run loads every other run's file into its in-memory LSH, so new data dedups against earlier
  runs; its own file (same input and config -> same run key) is ignored, so a run killed after
  writing it and rerun decides exactly as an uninterrupted run.
  """

  def __init__(self, path: str, conf: dict, run_key: str):
    self.root, self.run_key = Path(path), run_key
    meta = self.root / "index.json"
    if meta.exists():
      old = json.loads(meta.read_text())
      if old != conf:
        raise ValueError(f"--index {path}: built with {old}, this run uses {conf}; "
                         f"use a new index folder or the same --num-perm/--shingle")
    else:
      shards.write_json(meta, conf)

  def earlier(self):
    for f in sorted((self.root / "runs").glob("*.npz")):
      if f.stem != self.run_key:
        z = np.load(f)
        yield list(z["ids"]), z["sigs"]

  def add(self, ids: list[str], sigs: np.ndarray) -> None:
    f = self.root / "runs" / f"{self.run_key}.npz"
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.stem + ".tmp.npz")
    np.savez(tmp, ids=np.array(ids, dtype=str), sigs=sigs)
    os.replace(tmp, f)


class RedisIndex:
  """datasketch's Redis storage for the LSH, plus a Redis hash id -> signature for verification."""

  def __init__(self, url: str, threshold: float, num_perm: int, conf: dict):
    from urllib.parse import urlparse
    from datasketch import MinHashLSH
    u = urlparse(url)
    self.basename = f"swahili100-dedup-{conf['shingle']}-{num_perm}-{threshold}"
    rc = {"host": u.hostname or "localhost", "port": u.port or 6379,
          "db": int((u.path or "/0").strip("/") or 0)}
    self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, storage_config={
        "type": "redis", "basename": self.basename.encode(), "redis": rc})
    import redis
    self.r = redis.Redis(**rc)
    self.sig_key = self.basename + ":sig"

  def signature(self, key: str) -> np.ndarray | None:
    b = self.r.hget(self.sig_key, key)
    return None if b is None else np.frombuffer(b, dtype=np.uint32)

  def insert(self, key: str, m, sig: np.ndarray) -> None:
    self.r.hset(self.sig_key, key, sig.astype(np.uint32).tobytes())
    if key not in self.lsh:
      self.lsh.insert(key, m, check_duplication=False)


def run_key(paths: list[Path], conf: dict) -> str:
  h = hashlib.blake2b(json.dumps(conf, sort_keys=True).encode(), digest_size=8)
  for p in paths:
    st = p.stat()
    h.update(f"{p.name}:{st.st_size}\n".encode())
  return h.hexdigest()


def decide(input: Path, state: Path, *, threshold: float, num_perm: int, shingle: int, seed: int,
           batch: int, workers: int, max_line_bytes: int, sig_key: str,
           index: str | None = None, start_method: str = "fork") -> dict:
  """Passes 1-2: writes one decision list per shard under `state`; returns summary counts.

  Pass 1 is a resumable `run_units` phase (signatures per shard under `state/signatures`, valid
  for the run key `sig_key`), so a run killed in pass 2 does not recompute them. Pass 2 decides
  each shard, in input order, as soon as it and the shards before it have their signatures."""
  from datasketch import LeanMinHash, MinHashLSH
  from tqdm import tqdm
  paths = shards.list_shards(input)
  sig_dir = state / SIG_DIR
  tasks = shards.shard_tasks(input, sig_dir, lambda p, n: (
      p, n, max_line_bytes, shingle, num_perm, seed, batch, sig_dir, sig_key))
  position = {t.name: k for k, t in enumerate(tasks)}
  conf = {"num_perm": num_perm, "seed": seed, "shingle": shingle, "scheme": "affine32"}
  redis_index = local = None
  if index and index.startswith("redis://"):
    redis_index = RedisIndex(index, threshold, num_perm, conf)
    lsh = redis_index.lsh
  else:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
  # Keys in the in-memory LSH: survivor number s >= 0 of this run, -1-k for earlier runs' docs.
  ext_ids: list[str] = []
  ext_sigs: list[np.ndarray] = []
  if index and redis_index is None:
    local = LocalIndex(index, conf, run_key(paths, {**conf, "threshold": threshold}))
    for ids, sg in local.earlier():
      for i, doc_id in enumerate(ids):
        k = len(ext_ids)
        ext_ids.append(str(doc_id))
        ext_sigs.append(sg[i])
        lsh.insert(-1 - k, LeanMinHash(seed=seed, hashvalues=sg[i], scheme="affine32"),
                   check_duplication=False)
  exact: dict[bytes, int] = {}       # exact key -> survivor number
  survivors: list[str] = []          # survivor number -> id
  by_id: dict[str, int] = {}         # id -> survivor number (Redis keys are ids)
  sigs = np.empty((1024, num_perm), np.uint32)   # survivor number -> signature (grows x2)
  cluster: list[int] = []
  state.mkdir(parents=True, exist_ok=True)
  n_exact = n_near = n_earlier = 0
  decide_secs = 0.0
  bar = tqdm(total=len(tasks), desc="dedup decisions", unit="shard", file=sys.stderr,
             disable=None)

  def candidate(c, doc_id):
    """(survivor number or None, id, signature) of an LSH candidate; None to ignore it."""
    if isinstance(c, bytes):
      c = c.decode()
    if isinstance(c, (int, np.integer)):
      c = int(c)
      return (c, survivors[c], sigs[c]) if c >= 0 else (None, ext_ids[-1 - c], ext_sigs[-1 - c])
    if c in by_id:
      s = by_id[c]
      return s, c, sigs[s]
    if c == doc_id:   # itself, indexed by an interrupted earlier attempt of this run
      return None
    sg = redis_index.signature(c)
    return None if sg is None else (None, c, sg)

  def decide_shard(name: str, _) -> None:
    """One shard's decisions, in input order: they do not depend on --workers."""
    nonlocal sigs, n_exact, n_near, n_earlier, decide_secs
    t0 = time.perf_counter()
    ids, keys, sig = _load_signatures(sig_dir / (name + ".npz"))
    acts: list = []
    for pos, (doc_id, key) in enumerate(zip(ids, keys)):
      s = exact.get(key)
      if s is not None:
        n_exact += 1
        cluster[s] += 1
        acts.append({"drop": "exact_duplicate", "of": survivors[s], "jaccard": 1.0})
        continue
      m = LeanMinHash(seed=seed, hashvalues=sig[pos], scheme="affine32")
      best = None   # (survivor number or None, id, jaccard); earliest survivor wins
      for c in lsh.query(m):
        got = candidate(c, doc_id)
        if got is None:
          continue
        s, of, sg = got
        j = float(np.mean(sg == sig[pos]))
        if j < threshold:
          continue
        rank = (0, s) if s is not None else (1, of)   # this run's earliest first, then by id
        if best is None or rank < best[0]:
          best = (rank, s, of, j)
      if best is not None:
        _, s, of, j = best
        n_near += 1
        if s is not None:
          cluster[s] += 1
        else:
          n_earlier += 1
        acts.append({"drop": "near_duplicate", "of": of, "jaccard": round(j, 4)})
        continue
      s = len(survivors)
      survivors.append(doc_id)
      by_id[doc_id] = s
      cluster.append(1)
      exact[key] = s
      if s == len(sigs):
        sigs = np.concatenate([sigs, np.empty_like(sigs)])
      sigs[s] = sig[pos]
      if redis_index is not None:
        redis_index.insert(doc_id, m, sig[pos])
      else:
        lsh.insert(s, m, check_duplication=False)
      acts.append(s)
    # written per shard (write_json makes the folder): memory holds no decision lists
    shards.write_json(state / (name + ".json"),
                      [{"survivor": a} if isinstance(a, int) else a for a in acts])
    bar.update(1)
    decide_secs += time.perf_counter() - t0
    shards.event("decide_shard_done", shard=name, index=position[name])

  try:
    shards.run_units(tasks, _signature_unit, workers=workers, start_method=start_method,
                     desc="dedup signatures", valid=lambda t, d: d.get("run_key") == sig_key,
                     in_order=decide_shard)
  finally:
    bar.close()
  np.save(state / "clusters.tmp.npy", np.asarray(cluster, dtype=np.int64))
  os.replace(state / "clusters.tmp.npy", state / "clusters.npy")
  if local is not None:
    local.add(survivors, sigs[:len(survivors)])
  summary = {"exact_duplicates": n_exact, "near_duplicates": n_near,
             "near_duplicates_of_earlier_runs": n_earlier,
             "clusters_with_duplicates": sum(c > 1 for c in cluster),
             "largest_cluster": max(cluster, default=0)}
  print(f"dedup: decisions in {decide_secs:.1f} s", file=sys.stderr)
  shards.write_json(state / "complete.json", summary)
  return summary


class Apply:
  """Per-document function of pass 3: replays the decisions of one shard in order."""

  def __init__(self, state: Path):
    self.state = state
    self.acts, self.i, self.cluster = [], 0, None

  def start_shard(self, name: str) -> None:
    if self.cluster is None:   # survivor number -> cluster size, read once per process
      self.cluster = np.load(self.state / "clusters.npy")
    self.acts = json.loads((self.state / (name + ".json")).read_text())
    self.i = 0

  def __call__(self, doc: dict) -> dict | shards.Drop:
    a = self.acts[self.i]
    self.i += 1
    if "drop" in a:
      return shards.Drop(a["drop"], {"duplicate_of": a["of"], "jaccard": a["jaccard"]})
    doc["dup_cluster_size"] = int(self.cluster[a["survivor"]])
    return doc


def _flags(p: argparse.ArgumentParser, cfg) -> None:
  d = cfg.dedup
  p.add_argument("--threshold", type=float, default=None,
                 help=f"LSH Jaccard threshold (default {d.threshold})")
  p.add_argument("--num-perm", type=int, default=None, help=f"default {d.num_perm}")
  p.add_argument("--shingle", type=int, default=None,
                 help=f"word n-gram size (default {d.shingle})")
  p.add_argument("--index", default=None,
                 help="persistent index across runs: a folder, or redis://host:port/db")


def main(argv: list[str] | None = None) -> int:
  args, cfg = shards.parse_cli(argv, "dedup", __doc__, "dedup", _flags)
  d, r = cfg.dedup, cfg.runner
  inp, out = Path(args.input), Path(args.output)
  state = out / STATE_DIR
  conf = {"threshold": d.threshold, "num_perm": d.num_perm, "shingle": d.shingle,
          "seed": d.seed, "batch": d.batch, "index": d.index, "scheme": "affine32"}
  done, key_file = state / "complete.json", state / "run_key"
  key = run_key(shards.list_shards(inp), conf)
  if done.exists():   # rerun: decisions are final; only unfinished shards are rewritten
    if not key_file.exists() or key_file.read_text() != key:
      raise SystemExit(f"dedup: {out} holds decisions for another input or config "
                       f"({state}); use a new --output or delete that folder")
    summary = json.loads(done.read_text())
  else:
    state.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    summary = decide(inp, state, threshold=d.threshold, num_perm=d.num_perm, shingle=d.shingle,
                     seed=d.seed, batch=d.batch, workers=r.workers,
                     max_line_bytes=r.max_line_bytes, sig_key=key, index=d.index,
                     start_method=r.start_method)
  shutil.rmtree(state / SIG_DIR, ignore_errors=True)   # decisions are final: signatures unused
  stats = shards.run_phase("dedup", inp, out, Apply(state), workers=r.workers,
                           max_line_bytes=r.max_line_bytes, start_method=r.start_method,
                           config=conf, extra_stats={"dedup": summary})
  print(shards.summary(stats), file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
