"""Grain input pipeline over the token records of `swahili100/records.py`.

Training: ArrayRecord shards -> seeded global shuffle, reshuffled each epoch, repeated forever ->
this process's slice -> documents concatenated and split into rows of `seq_len + 1` tokens with
segment ids and positions (Grain's `ConcatThenSplitIterDataset`; a document longer than a row
continues in the next row as a new segment, so attention never crosses a document boundary) ->
batches of `batch_size / process_count` rows -> background prefetch. The iterator is
checkpointable (`get_state` / `set_state`), so a resumed run sees exactly the batches it would have.

Each batch is a dict of int32 arrays [B, T]: `inputs`, `targets`, `segment_ids`, `positions`, and
`mask` (1 where the target is the next token of the same document, 0 across boundaries/padding).
"""

import math
import os

import grain
import grain.experimental as grain_exp
import numpy as np
import tokenizers

from swahili100 import records


def check_manifest(config) -> records.Manifest:
  """Reads the manifest and checks it against the config's tokenizer and model."""
  records_dir = config.data.records_dir
  manifest = records.read_manifest(records_dir)
  path = os.path.join(records_dir, records.MANIFEST)
  tok_path = config.data.tokenizer
  if not os.path.exists(tok_path):
    raise records.RecordsError(
        f"tokenizer {tok_path!r} (config.data.tokenizer) not found; point it at the tokenizer "
        f"the records were made with: {manifest.tokenizer_file}")
  sha = records.sha256_file(tok_path)
  if sha != manifest.tokenizer_sha256:
    raise records.RecordsError(
        f"{path} was tokenized with {manifest.tokenizer_file} (sha256 "
        f"{manifest.tokenizer_sha256[:12]}...) but config.data.tokenizer={tok_path!r} has sha256 "
        f"{sha[:12]}...; set --config.data.tokenizer to the records' tokenizer or re-run "
        "`swahili100 tokenize` with this one.")
  if manifest.vocab_size != config.model.vocab_size:
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


def _documents(paths: list[str], dtype: str) -> grain.MapDataset:
  source = grain.sources.ArrayRecordDataSource(paths)
  return grain.MapDataset.source(source).map(
      lambda r: {"tokens": records.decode(r, dtype)})


def _pack_and_batch(docs: grain.IterDataset, seq_len: int, batch: int, drop_remainder: bool):
  rows = grain_exp.ConcatThenSplitIterDataset(docs, length_struct={"tokens": seq_len + 1})
  return rows.batch(batch, drop_remainder=drop_remainder).map(_rows_to_batch)


def train_dataset(config, manifest: records.Manifest, process_index: int = 0,
                  process_count: int = 1) -> grain.IterDataset:
  """The infinite, shuffled, packed training stream of this process."""
  d = config.data
  if d.batch_size % process_count:
    raise ValueError(f"config.data.batch_size={d.batch_size} must divide over "
                     f"{process_count} processes")
  docs = _documents(manifest.shard_paths(d.records_dir, "train"), manifest.dtype)
  docs = docs.seed(d.shuffle_seed).shuffle().repeat(None)
  docs = docs[process_index::process_count]
  options = grain.ReadOptions(num_threads=0) if d.worker_count == 0 else None
  ds = _pack_and_batch(docs.to_iter_dataset(options), d.seq_len,
                       d.batch_size // process_count, drop_remainder=True)
  if d.worker_count > 0:
    return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=d.worker_count))
  if d.prefetch > 0:
    return grain_exp.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=d.prefetch)
  return ds


def eval_batches(config, manifest: records.Manifest, max_batches: int = -1):
  """Yields the validation split's packed batches in a fixed order (padded final batch)."""
  d = config.data
  docs = _documents(manifest.shard_paths(d.records_dir, "validation"), manifest.dtype)
  ds = _pack_and_batch(docs.to_iter_dataset(), d.seq_len, d.batch_size, drop_remainder=False)
  for i, batch in enumerate(ds):
    if 0 <= max_batches <= i:
      return
    pad = d.batch_size - batch["inputs"].shape[0]
    if pad:
      batch = {k: np.pad(v, ((0, pad), (0, 0))) for k, v in batch.items()}
    yield batch


def token_bytes(tokenizer_path: str, vocab_size: int) -> np.ndarray:
  """UTF-8 bytes each token stands for (byte-level BPE: one vocab character = one byte).

  Special tokens count 0 bytes, so bits-per-byte = sum(nats) / ln 2 / sum(bytes of targets).
  """
  tok = tokenizers.Tokenizer.from_file(tokenizer_path)
  special = {t.content for t in tok.get_added_tokens_decoder().values()}
  out = np.zeros(vocab_size, np.int32)
  for token, i in tok.get_vocab().items():
    if i < vocab_size and token not in special:
      out[i] = len(token)
  return out


def bits_per_byte(sum_nats: float, sum_bytes: float) -> float:
  return sum_nats / math.log(2) / max(sum_bytes, 1.0)
