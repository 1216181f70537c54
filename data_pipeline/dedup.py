"""Phase 3: exact then MinHash-LSH near-duplicate removal, one deterministic survivor per cluster.

  swahili100 dedup --input data/cleaned --output data/deduped --threshold 0.8 --workers 2
  swahili100 dedup ... --index data/dedup-index           # persistent index across runs (folder)
  swahili100 dedup ... --index redis://host:6379/0        # ... or in a Redis server
  swahili100 dedup ... --num-processes 4 --process-id K   # on machine K of 4, one shared --output

Pass 1 (`shards.run_units` over this process's share of the shards, resumable: one
`.dedup/signatures/<shard>.npz` and marker per shard, deleted once the decisions are final): per
document a 16-byte exact key (blake2b of the lower-cased, whitespace-collapsed text) and a MinHash
signature of its word `shingle`-grams, computed in batches with numpy using datasketch's own
"affine32" permutations and fmix pre-mix, so the values equal
`datasketch.MinHash(scheme="affine32").update_batch(...)` on the same shingle hashes.
Pass 2 (process 0, once every share's signatures are in; `dedup_index`, bounded memory): in input
order, an exact duplicate of an earlier survivor is dropped (`exact_duplicate`), else a document
whose LSH candidates include a survivor with signature Jaccard >= threshold is dropped
(`near_duplicate`, of the earliest), else it survives. Only survivors are candidates, so each
cluster is a star around its first document. With `--index`, earlier runs' survivors are
candidates too (ranked after this run's, by id; a match is counted in
`near_duplicates_of_earlier_runs`), and this run's survivors are added once decided.
Pass 3 (shard runner, each process its share; process 0 writes stats.json): survivors are written
with `dup_cluster_size` (for later upsampling); removed documents record `duplicate_of` and
`jaccard`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from data_pipeline import dedup_index, shards

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
  dedup_index.write_source(folder / (name + ".npz"), ids,
                           np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 16), sig)
  return {"docs": len(ids), "run_key": key}


class LocalIndex:
  """Persistent index in a folder: `runs/<run key>.<shard number>.npz` (survivor ids, keys and
  signatures) per run and shard.

  A run reads every other run's files as earlier documents, so new data dedups against earlier
  runs; its own files (same input and config -> same run key) are ignored, so a run killed after
  writing them and rerun decides exactly as an uninterrupted run.
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

  def earlier(self, spool: Path) -> list[Path]:
    del spool   # read in place
    return [f for f in sorted((self.root / "runs").glob("*.npz"))
            if f.name.split(".")[0] != self.run_key]

  def add(self, k: int, ids: list[str], keys: np.ndarray, sigs: np.ndarray) -> None:
    dedup_index.write_source(self.root / "runs" / f"{self.run_key}.{k:05d}.npz", ids, keys, sigs)


class IndexUnavailable(RuntimeError):
  """The Redis index stopped answering; nothing of this run was marked finished."""


class RedisIndex:
  """Earlier runs' survivors in Redis, for machines without a shared folder: a hash id ->
  signature and a hash id -> run key (a run ignores its own entries, as the folder index does)."""

  SPOOL_DOCS = 1 << 16   # earlier documents per spooled file (bounded memory)

  def __init__(self, url: str, conf: dict, run_key: str):
    import redis   # noqa: PLC0415  (optional: only for redis:// indexes)
    u = urlparse(url)
    self.url, self.run_key, self.errors = url, run_key, redis.exceptions.RedisError
    self.r = redis.Redis(host=u.hostname or "localhost", port=u.port or 6379,
                         db=int((u.path or "/0").strip("/") or 0), socket_timeout=30,
                         socket_connect_timeout=10)
    base = "swahili100-dedup:" + ":".join(str(conf[k]) for k in sorted(conf))
    self.sig_key, self.run_hash = base + ":sig", base + ":run"

  def _call(self, fn, *args):
    try:
      return fn(*args)
    except self.errors as e:
      raise IndexUnavailable(f"the Redis index {self.url} stopped answering ({e})") from e

  def earlier(self, spool: Path) -> list[Path]:
    """Spools the other runs' survivors to local files (one scan of the server)."""
    files, keys, sigs = [], [], []

    def flush():   # this run's own entries (an interrupted attempt's) are not earlier documents
      runs = self._call(self.r.hmget, self.run_hash, keys)
      other = [r is None or r.decode() != self.run_key for r in runs]
      if any(other):
        f = spool / f"redis-{len(files):05d}.npz"
        ids = [k.decode("utf-8", "surrogatepass") for k, o in zip(keys, other) if o]
        dedup_index.write_source(f, ids, np.zeros((len(ids), 16), np.uint8),
                                 np.stack([s for s, o in zip(sigs, other) if o]))
        files.append(f)
      keys.clear(), sigs.clear()

    try:
      for key, sig in self.r.hscan_iter(self.sig_key, count=1000):
        keys.append(key)
        sigs.append(np.frombuffer(sig, np.uint32))
        if len(keys) >= self.SPOOL_DOCS:
          flush()
    except self.errors as e:
      raise IndexUnavailable(f"the Redis index {self.url} stopped answering ({e})") from e
    if keys:
      flush()
    return files

  def add(self, k: int, ids: list[str], keys: np.ndarray, sigs: np.ndarray) -> None:
    del k, keys
    pipe = self.r.pipeline(transaction=False)
    for doc_id, sig in zip(ids, sigs):
      key = doc_id.encode("utf-8", "surrogatepass")
      pipe.hset(self.sig_key, key, sig.astype(np.uint32).tobytes())
      pipe.hset(self.run_hash, key, self.run_key)
    self._call(pipe.execute)


def open_index(where: str | None, conf: dict, key: str) -> LocalIndex | RedisIndex | None:
  if not where:
    return None
  if where.startswith("redis://"):
    return RedisIndex(where, conf, key)
  return LocalIndex(where, conf, key)


def run_key(paths: list[Path], conf: dict) -> str:
  h = hashlib.blake2b(json.dumps(conf, sort_keys=True).encode(), digest_size=8)
  for p in paths:
    st = p.stat()
    h.update(f"{p.name}:{st.st_size}\n".encode())
  return h.hexdigest()


def signatures(input: Path, state: Path, d, r, sig_key: str) -> list[shards.Unit]:
  """Pass 1, resumable (one `state/signatures/<shard>.npz` and marker per shard, valid for the
  run key `sig_key`): this process's share of the shards, then process 0 waits for the rest."""
  sig_dir = state / SIG_DIR
  tasks = shards.shard_tasks(input, sig_dir, lambda p, n: (
      p, n, r.max_line_bytes, d.shingle, d.num_perm, d.seed, d.batch, sig_dir, sig_key))
  i, n = d.process_id, d.num_processes
  valid = lambda t, m: m.get("run_key") == sig_key   # noqa: E731
  shards.run_units(tasks[i::n], _signature_unit, workers=r.workers, start_method=r.start_method,
                   desc="dedup signatures", valid=valid)
  if n > 1 and i == 0:
    shards.wait_for(tasks, d.wait_timeout_s, "dedup process 0", n, valid)
  return tasks


def decide(input: Path, state: Path, d, tasks: list[shards.Unit]) -> dict:
  """Pass 2 (process 0, `dedup_index.decide`, bounded memory): one decision file per shard,
  this run's survivors added to `--index`, `complete.json`; returns the summary counts."""
  conf = {"num_perm": d.num_perm, "seed": d.seed, "shingle": d.shingle, "scheme": "affine32"}
  index = open_index(d.index, conf, run_key(shards.list_shards(input),
                                             {**conf, "threshold": d.threshold}))
  spool = state / "earlier"
  shutil.rmtree(spool, ignore_errors=True)
  spool.mkdir(parents=True)
  t0 = time.perf_counter()
  earlier = index.earlier(spool) if index else []
  sources = [dedup_index.SignatureFile(f, True, None) for f in earlier]
  sources += [dedup_index.SignatureFile(state / SIG_DIR / (t.name + ".npz"), False, t.name)
              for t in tasks]
  summary = dedup_index.decide(dedup_index.plan(sources, d.threshold, d.num_perm), state,
                               threshold=d.threshold, num_perm=d.num_perm, seed=d.seed,
                               memory_mb=d.memory_mb)
  if index is not None:
    for k, t in enumerate(tasks):
      _add_survivors(index, k, state, t.name)
  shutil.rmtree(spool, ignore_errors=True)
  print(f"dedup: decisions in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
  shards.write_json(state / "complete.json", summary)
  return summary


def _add_survivors(index, k: int, state: Path, name: str) -> None:
  ids, keys, sigs = dedup_index.read_source(state / SIG_DIR / (name + ".npz"))
  dropped = {int(i) for i, d in _decisions(state, name)["decisions"].items() if d[0] != "survivor"}
  keep = np.array([i not in dropped for i in range(len(ids))], bool)
  index.add(k, [x for x, y in zip(ids, keep) if y], keys[keep], sigs[keep])


def _decisions(state: Path, name: str) -> dict:
  return json.loads((state / (name + ".json")).read_text())


class Apply:
  """Per-document function of pass 3: replays the decisions of one shard in order."""

  def __init__(self, state: Path):
    self.state = state
    self.decisions, self.i = {}, 0

  def start_shard(self, name: str) -> None:
    self.decisions = _decisions(self.state, name)["decisions"]
    self.i = 0

  def __call__(self, doc: dict) -> dict | shards.Drop:
    what, *info = self.decisions.get(str(self.i), ("survivor", 1))
    self.i += 1
    if what != "survivor":
      return shards.Drop(what, {"duplicate_of": info[0], "jaccard": info[1]})
    doc["dup_cluster_size"] = info[0]
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
  p.add_argument("--process-id", type=int, default=None,
                 help="this process's share of the shards (several machines, one shared folder)")
  p.add_argument("--num-processes", type=int, default=None,
                 help=f"processes sharing the work (default {d.num_processes})")


def main(argv: list[str] | None = None) -> int:
  args, cfg = shards.parse_cli(argv, "dedup", __doc__, "dedup", _flags)
  d, r = cfg.dedup, cfg.runner
  if not 0 <= d.process_id < d.num_processes:
    raise SystemExit(f"dedup: --process-id {d.process_id} is not one of 0..{d.num_processes - 1} "
                     f"(--num-processes {d.num_processes})")
  inp, out = Path(args.input), Path(args.output)
  state = out / STATE_DIR
  conf = {"threshold": d.threshold, "num_perm": d.num_perm, "shingle": d.shingle,
          "seed": d.seed, "batch": d.batch, "index": d.index, "scheme": "affine32"}
  try:
    summary = _run_decisions(inp, state, d, r, run_key(shards.list_shards(inp), conf))
  except IndexUnavailable as e:
    again = shlex.join(["swahili100", "dedup", *(sys.argv[2:] if argv is None else argv)])
    raise SystemExit(f"dedup: {e}. Nothing of this run is marked finished (no "
                     f"{state / 'complete.json'}); the signatures are kept. Start the server "
                     f"again and rerun the same command: {again}") from e
  stats = shards.run_phase("dedup", inp, out, Apply(state), workers=r.workers,
                           max_line_bytes=r.max_line_bytes, start_method=r.start_method,
                           config=conf, extra_stats={"dedup": summary},
                           share=(d.process_id, d.num_processes), wait_timeout_s=d.wait_timeout_s)
  print(shards.summary(stats), file=sys.stderr)
  return 0


def _run_decisions(inp: Path, state: Path, d, r, key: str) -> dict:
  """The run's decisions: made now (process 0), awaited (the others) or read back (a rerun)."""
  done, key_file = state / "complete.json", state / "run_key"
  if not done.exists():
    state.mkdir(parents=True, exist_ok=True)
    if d.process_id == 0:
      key_file.write_text(key)
    tasks = signatures(inp, state, d, r, key)
    if d.process_id == 0:
      summary = decide(inp, state, d, tasks)
      shutil.rmtree(state / SIG_DIR, ignore_errors=True)   # decisions are final
      return summary
    shards.wait_for([shards.Unit("decisions", done, None)], d.wait_timeout_s,
                    f"dedup process {d.process_id}", 1)
  if not key_file.exists() or key_file.read_text() != key:
    raise SystemExit(f"dedup: {state.parent} holds decisions for another input or config "
                     f"({state}); use a new --output or delete that folder")
  if d.process_id == 0:
    shutil.rmtree(state / SIG_DIR, ignore_errors=True)
  return json.loads(done.read_text())


if __name__ == "__main__":
  sys.exit(main())
