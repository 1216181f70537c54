"""Grain input pipeline over the token records of `swahili100/records.py`.

Training: ArrayRecord shards (a local mirror when they live on gs://) -> seeded global shuffle,
reshuffled each epoch, repeated forever (or a weighted mixture of per-source streams planned by
`swahili100 plan-data`, `config.data.mixture`) -> rounds of B documents, of which each process
takes the B/P of its rows (`rounds`) -> read and decoded in `config.data.worker_count` Grain
worker processes (optional, order kept) -> one packing stream per row (`PackStreams`): row j of
every batch concatenates the j-th documents of the rounds and is cut into `seq_len + 1` tokens,
each piece a segment with positions restarting at 0, so attention never crosses a document
boundary -> background prefetch. A global batch is therefore the same for any number of
processes and workers, and each process reads only its share. The iterator is checkpointable
(`get_state` / `set_state`), so a resumed run sees exactly the batches it would have.

Each batch is a dict of int32 arrays [B, T]: `inputs`, `targets`, `segment_ids`, `positions`, and
`mask` (1 where the target is the next token of the same document, 0 across boundaries/padding).
Evaluation packs the validation split as one stream (`eval_batches`), the same on every process.
"""

import grain
import grain.experimental as grain_exp
import numpy as np
from absl import flags

from swahili100 import config_lib, fs, records


def records_dir(config) -> str:
  """A local folder with the run's records (a cached mirror when they live on gs://), listed
  once per command: `check_manifest` reads the manifest there and it keeps the folder."""
  return fs.local_dir(config.data.records_dir)


def check_manifest(config) -> records.Manifest:
  """Reads the manifest and checks it against the config's tokenizer and model."""
  where = config.data.records_dir
  manifest = records.read_manifest(records_dir(config))
  path = fs.join(where, records.MANIFEST)
  tok_path = config.data.tokenizer
  if not fs.exists(tok_path):
    raise records.RecordsError(
        f"tokenizer {tok_path!r} (config.data.tokenizer) not found; point it at the tokenizer "
        f"the records were made with: {manifest.tokenizer_file}")
  sha = fs.sha256(tok_path)
  if sha != manifest.tokenizer_sha256:
    raise records.RecordsError(
        f"{path} was tokenized with {manifest.tokenizer_file} (sha256 "
        f"{manifest.tokenizer_sha256[:12]}...) but config.data.tokenizer={tok_path!r} has sha256 "
        f"{sha[:12]}...; set --config.data.tokenizer to the records' tokenizer or re-run "
        "`swahili100 tokenize` with this one.")
  # An imported model's vocabulary may be padded (Qwen3's, an extended one's): rows above the
  # records' ids are never a target. A model trained here has exactly the records' size.
  imported = bool(config_lib.init_from(config)) or "import" in config
  padded = imported and manifest.vocab_size <= config.model.vocab_size
  if manifest.vocab_size != config.model.vocab_size and not padded:
    raise records.RecordsError(
        f"{path} has vocab_size {manifest.vocab_size} but config.model.vocab_size is "
        f"{config.model.vocab_size}; set --config.model.vocab_size={manifest.vocab_size}.")
  return manifest


def _rows_to_batch(rows: dict) -> dict:
  """[B, T+1] packed rows -> next-token inputs/targets with a same-document mask."""
  tok, seg, pos = rows["tokens"], rows["tokens_segment_ids"], rows["tokens_positions"]
  mask = (seg[:, 1:] == seg[:, :-1]) & (seg[:, :-1] > 0)
  return {"inputs": tok[:, :-1], "targets": tok[:, 1:], "segment_ids": seg[:, :-1],
          "positions": pos[:, :-1], "mask": mask.astype(np.int32)}


class _Decode(grain.transforms.Map):
  """Record bytes -> {'tokens': int32 ids} (a class, so Grain worker processes can pickle it)."""

  def __init__(self, dtype: str):
    self.dtype = dtype

  def map(self, record):
    return {"tokens": records.decode(record, self.dtype)}


def _documents(paths: list[str], dtype: str) -> grain.MapDataset:
  return grain.MapDataset.source(grain.sources.ArrayRecordDataSource(paths)).map(_Decode(dtype))


def _pack_and_batch(docs: grain.IterDataset, seq_len: int, batch: int, drop_remainder: bool):
  """One packing stream split into batches (evaluation: every process reads all of it).

  Two packers on purpose: evaluation is one stream cut in order, which Grain's ConcatThenSplit
  does; training needs one stream per row (`PackStreams`), so that a global batch is the same
  for any number of processes and each process packs only its rows."""
  rows = grain_exp.ConcatThenSplitIterDataset(docs, length_struct={"tokens": seq_len + 1})
  return rows.batch(batch, drop_remainder=drop_remainder).map(_rows_to_batch)


class _Rows(grain.transforms.Map):
  """A list of the B documents of one round -> the `count` of them from `start` (this
  process's rows)."""

  def __init__(self, start: int, count: int):
    self.start, self.count = start, count

  def map(self, docs):
    return docs[self.start:self.start + self.count]


def rounds(examples: grain.MapDataset, batch_size: int, process_index: int,
           process_count: int) -> grain.MapDataset:
  """Round r = examples [r·B, (r+1)·B), of which this process takes its B / P consecutive ones.

  Row j of every global batch is fed only by examples j, j + B, j + 2B, ..., so a global batch
  is the same for any process count that divides B, and each process reads only its share."""
  if batch_size % process_count:
    raise config_lib.ConfigError(f"config.data.batch_size={batch_size} must divide over "
                                 f"{process_count} processes")
  local = batch_size // process_count
  return examples.batch(batch_size, batch_fn=list).map(_Rows(process_index * local, local))


class Stack(grain.transforms.Map):
  """A list of examples (dicts of arrays, possibly nested) -> one dict of stacked arrays."""

  def map(self, examples):
    if isinstance(examples[0], dict):
      return {k: self.map([e[k] for e in examples]) for k in examples[0]}
    return np.stack(examples)


class PackStreams(grain.IterDataset):
  """Rounds of documents -> rows of `length` tokens, one packing stream per row position.

  Stream j concatenates the j-th document of every round; a row takes the next `length` tokens
  of its stream, each piece (a document or the rest of one) a segment of its own with positions
  restarting at 0, so attention never crosses a document boundary. The state is the parent's plus
  the tokens waiting in each stream, so a restored iterator continues exactly."""

  def __init__(self, parent: grain.IterDataset, length: int):
    super().__init__(parent)
    self.length = length

  def __iter__(self):
    return _PackIterator(self._parent.__iter__(), self.length)


class _PackIterator(grain.DatasetIterator):

  def __init__(self, parent, length: int):
    super().__init__(parent)
    self.length = length
    self.waiting: list[list[np.ndarray]] | None = None  # per stream: pieces not yet emitted

  def __next__(self) -> dict:
    L = self.length
    while self.waiting is None or any(sum(map(len, w)) < L for w in self.waiting):
      docs = next(self._parent)
      if self.waiting is None:
        self.waiting = [[] for _ in docs]
      for w, doc in zip(self.waiting, docs):
        if len(doc["tokens"]):
          w.append(np.asarray(doc["tokens"], np.int32))
    n = len(self.waiting)
    out = {k: np.zeros((n, L), np.int32) for k in ("tokens", "tokens_segment_ids",
                                                    "tokens_positions")}
    for j, w in enumerate(self.waiting):
      t, segment = 0, 1
      while t < L:
        piece = w[0]
        take = min(len(piece), L - t)
        out["tokens"][j, t:t + take] = piece[:take]
        out["tokens_segment_ids"][j, t:t + take] = segment
        out["tokens_positions"][j, t:t + take] = np.arange(take)
        if take == len(piece):
          w.pop(0)
        else:
          w[0] = piece[take:]
        t, segment = t + take, segment + 1
    return out

  def get_state(self) -> dict:
    waiting = None if self.waiting is None else [[p.tolist() for p in w] for w in self.waiting]
    return {"parent": self._parent.get_state(), "waiting": waiting}

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state["parent"])
    self.waiting = None if state["waiting"] is None else [
        [np.asarray(p, np.int32) for p in w] for w in state["waiting"]]


def workers(ds: grain.IterDataset, d) -> grain.IterDataset:
  """Reads and decodes in `config.data.worker_count` Grain worker processes (0 = in-process).

  Applied to the per-example stream, before packing and batching: each worker takes every n-th
  example and Grain interleaves them back in order, so the batches are the same whatever the
  worker count (packing in the workers would pack each worker's slice on its own)."""
  if d.worker_count <= 0:
    return ds
  if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; this CLI uses argparse
    flags.FLAGS.mark_as_parsed()
  return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=d.worker_count))


def prefetch(ds: grain.IterDataset, d) -> grain.IterDataset:
  """A background thread keeping `config.data.prefetch` batches ready (0 = none)."""
  if d.prefetch > 0:
    return grain_exp.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=d.prefetch)
  return ds


def train_dataset(config, manifest: records.Manifest, process_index: int = 0,
                  process_count: int = 1) -> grain.IterDataset:
  """The infinite, shuffled, packed training stream of this process: its rows of every global
  batch (`rounds`), identical for any number of processes and Grain workers."""
  d = config.data
  docs = _documents(manifest.shard_paths(manifest.root, "train"), manifest.dtype)
  if d.get("mixture"):
    docs = mixture(docs, read_mixture(d.mixture), records.read_source_index(
        manifest.root, "train", manifest), d.shuffle_seed, d.mixture)
  else:
    docs = docs.seed(d.shuffle_seed).shuffle().repeat(None)
  docs = rounds(docs, d.batch_size, process_index, process_count)
  docs = workers(docs.to_iter_dataset(grain.ReadOptions(num_threads=0)), d)
  return prefetch(PackStreams(docs, d.seq_len + 1).map(_rows_to_batch), d)


class _Subset(grain.MapDataset):
  """The records at `indices` of a MapDataset (one source of a mixture; repeats allowed)."""

  def __init__(self, parent: grain.MapDataset, indices: np.ndarray):
    super().__init__(parent)
    self.indices = np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return self._parent[int(self.indices[index % len(self.indices)])]


def read_mixture(path: str) -> dict:
  """A `swahili100 plan-data` mixture.json, checked for what the loader reads: `sources`, each
  with a numeric `document_weight`."""
  try:
    plan = fs.read_json(path)
  except (OSError, ValueError) as e:
    raise config_lib.ConfigError(f"config.data.mixture={path!r}: cannot read it ({e}); give the "
                                 "mixture.json that `swahili100 plan-data` wrote") from e
  sources = plan.get("sources") if isinstance(plan, dict) else None
  bad = [n for n, s in (sources or {}).items()
         if not isinstance(s, dict) or not isinstance(s.get("document_weight"), (int, float))]
  if not isinstance(sources, dict) or not sources or bad:
    raise config_lib.ConfigError(
        f"config.data.mixture={path!r}: not a plan-data mixture "
        + (f"(sources {bad} have no numeric document_weight)" if bad else "(no 'sources')")
        + "; write it with `swahili100 plan-data --output mixture.json`")
  return plan


def mixture_summary(plan: dict) -> dict:
  """What config.json records of a mixture plan: its rule, and weight and epochs per source."""
  return {"rule": plan.get("rule"),
          "document_weight": {n: s["document_weight"] for n, s in plan["sources"].items()},
          "epochs": {n: s.get("epochs") for n, s in plan["sources"].items()}}


def mixture(docs: grain.MapDataset, plan: dict, index, seed: int, where: str) -> grain.MapDataset:
  """`docs` as a weighted mixture of its sources, by a `swahili100 plan-data` mixture.json.

  Each source is its own shuffled, repeated dataset (under `rehydrate`, a record appears as many
  times as its dedup cluster's repeat); sources are drawn with the plan's `document_weight`, so
  the token shares and epochs are the plan's."""
  if index is None:
    raise config_lib.ConfigError(f"config.data.mixture={where!r} needs per-source records; these "
                                 "were tokenized before sources were recorded: re-run "
                                 "`swahili100 tokenize`")
  parts, weights = [], []
  for source_id, name in enumerate(index.names):
    plan_source = plan["sources"].get(name)
    if not plan_source or plan_source["document_weight"] <= 0:
      continue
    ids = np.nonzero(index.source == source_id)[0]
    if plan.get("rule") == "rehydrate":
      rows = sorted(plan_source["repeats"], key=lambda r: r["min_size"])
      starts = np.array([r["min_size"] for r in rows])
      copies = np.array([r["repeat"] for r in rows])
      row = np.maximum(np.searchsorted(starts, np.maximum(index.cluster_size[ids], 1),
                                       side="right") - 1, 0)
      ids = np.repeat(ids, copies[row])
    if len(ids):
      parts.append(_Subset(docs, ids).seed(seed + source_id).shuffle().repeat(None))
      weights.append(plan_source["document_weight"])
  missing = [n for n in plan["sources"] if n not in index.names]
  if missing or not parts:
    raise config_lib.ConfigError(f"{where}: sources {missing or list(plan['sources'])} are not "
                                 f"in the records (which hold {index.names}); plan the mixture "
                                 "on the same filtered data the records were tokenized from")
  return grain.MapDataset.mix(parts, weights)


def eval_batches(config, manifest: records.Manifest, max_batches: int = -1):
  """Yields the validation split's packed batches in a fixed order (padded final batch)."""
  d = config.data
  docs = _documents(manifest.shard_paths(manifest.root, "validation"), manifest.dtype)
  ds = _pack_and_batch(docs.to_iter_dataset(), d.seq_len, d.batch_size, drop_remainder=False)
  for i, batch in enumerate(ds):
    if 0 <= max_batches <= i:
      return
    pad = d.batch_size - batch["inputs"].shape[0]
    if pad:
      batch = {k: np.pad(v, ((0, pad), (0, 0))) for k, v in batch.items()}
    yield batch
