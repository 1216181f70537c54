"""The token-record contract (docs/ARCHITECTURE.md, Contracts): writing and reading token shards.

A records folder holds `manifest.json` and ArrayRecord shards per split, e.g.
`train-00000-of-00008.array_record`. One record is one document's token ids as little-endian
unsigned integers (`uint16` while the vocabulary fits, else `uint32`), ending with the
end-of-text id. `data_pipeline/tokenize.py` writes this format; `swahili100/loader.py` reads it.

Per source (additions within format version 1; manifests written before them read as before):
`manifest.json` lists the source names (`sources`, index = source id) and per split the
documents, tokens and bytes of each source; `<split>-sources.npy` holds the source id of every
record and `<split>-clusters.npy` its dedup cluster size (`dup_cluster_size`, 0 if unknown), both
in the global record order of the split: its shards in manifest order, one after another (the
order of `grain.sources.ArrayRecordDataSource(manifest.shard_paths(dir, split))`).
`read_source_index` returns them, or None for an older manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Iterable, Iterator, NamedTuple

import numpy as np
from array_record.python import array_record_module as ar

FORMAT = "swahili100-token-records"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class RecordsError(ValueError):
  """A records folder or manifest that does not satisfy the contract."""


def dtype_for_vocab(vocab_size: int) -> str:
  """Smallest contract dtype that holds every id of a `vocab_size` vocabulary."""
  return "uint16" if vocab_size <= 2**16 else "uint32"


def shard_name(split: str, index: int, num_shards: int) -> str:
  return f"{split}-{index:05d}-of-{num_shards:05d}.array_record"


def sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def encode(ids: Iterable[int] | np.ndarray, dtype: str) -> bytes:
  """One document's ids as the little-endian bytes of one record."""
  return np.asarray(ids, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def decode(record: bytes, dtype: str) -> np.ndarray:
  """Inverse of `encode`; returns native-endian int32 ids."""
  return np.frombuffer(record, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.int32)


def index_files(split: str) -> tuple[str, str]:
  """(per-record source ids, per-record dedup cluster sizes) file names of one split."""
  return f"{split}-sources.npy", f"{split}-clusters.npy"


def source_dtype(num_sources: int) -> str:
  """Smallest little-endian dtype holding every source id."""
  return "<u1" if num_sources <= 2**8 else "<u2" if num_sources <= 2**16 else "<u4"


def write_array(path: str, array: np.ndarray) -> None:
  """One `.npy` file, written atomically (tmp + rename)."""
  with open(path + ".tmp", "wb") as f:
    np.save(f, array)
  os.replace(path + ".tmp", path)


class RecordWriter:
  """Writes one ArrayRecord shard atomically: records go to `<path>.tmp`, renamed on close."""

  def __init__(self, path: str, dtype: str):
    self.path, self.dtype, self.count = path, dtype, 0
    self._tmp = path + ".tmp"
    # group_size:1 keeps random access cheap, which Grain's global shuffle needs.
    self._writer = ar.ArrayRecordWriter(self._tmp, "group_size:1")

  def write(self, ids) -> None:
    self._writer.write(encode(ids, self.dtype))
    self.count += 1

  def close(self) -> None:
    self._writer.close()
    os.replace(self._tmp, self.path)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    if exc_type is None:
      self.close()
    else:
      self._writer.close()
      os.remove(self._tmp)


def read_shard(path: str, dtype: str) -> Iterator[np.ndarray]:
  """Yields every document of one shard in order (for tools and tests; training uses Grain)."""
  reader = ar.ArrayRecordReader(path)
  try:
    for i in range(reader.num_records()):
      yield decode(reader.read([i])[0], dtype)
  finally:
    reader.close()


@dataclasses.dataclass
class SplitInfo:
  shards: list[str]
  documents: int
  tokens: int
  bytes: int  # UTF-8 bytes of the documents' text, for bits-per-byte.
  sources: dict[str, dict] | None = None  # name -> {"documents", "tokens", "bytes"} in the split
  source_index: str | None = None         # file: source id of every record (global order)
  cluster_size: str | None = None         # file: dedup cluster size of every record (0: unknown)


@dataclasses.dataclass
class Manifest:
  dtype: str
  tokenizer_file: str
  tokenizer_sha256: str
  vocab_size: int
  special_tokens: dict[str, int]  # name -> id, e.g. {"<|endoftext|>": 0, "<|pad|>": 1, ...}
  eos_id: int
  pad_id: int
  splits: dict[str, SplitInfo]
  format: str = FORMAT
  format_version: int = FORMAT_VERSION
  sources: list[str] | None = None  # source id -> name, for `<split>-sources.npy`
  root: str = ""                    # the local folder it was read from (not written)

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    del d["root"]
    return json.dumps(d, indent=2, ensure_ascii=False) + "\n"

  def shard_paths(self, records_dir: str, split: str) -> list[str]:
    if split not in self.splits:
      raise RecordsError(
          f"{os.path.join(records_dir, MANIFEST)} has no split {split!r} (has "
          f"{sorted(self.splits)}); re-run `swahili100 tokenize` with a validation fraction > 0.")
    return [os.path.join(records_dir, s) for s in self.splits[split].shards]


def write_manifest(records_dir: str, manifest: Manifest) -> str:
  """Writes `manifest.json` atomically (last, so a folder with a manifest is complete)."""
  path = os.path.join(records_dir, MANIFEST)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(manifest.to_json())
  os.replace(path + ".tmp", path)
  return path


def read_manifest(records_dir: str) -> Manifest:
  """Reads and checks a manifest; every error names the file and the fix."""
  path = os.path.join(records_dir, MANIFEST)
  if not os.path.exists(path):
    raise RecordsError(
        f"{path} not found: {records_dir!r} is not a token-records folder. Build one with "
        "`swahili100 tokenize --input <filtered shards> --tokenizer <tokenizer json> --output DIR`.")
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except json.JSONDecodeError as e:
    raise RecordsError(f"{path} is not valid JSON ({e}); re-run `swahili100 tokenize`.") from e
  if raw.get("format") != FORMAT:
    raise RecordsError(f"{path}: format is {raw.get('format')!r}, expected {FORMAT!r}.")
  if raw.get("format_version") != FORMAT_VERSION:
    raise RecordsError(
        f"{path}: format_version {raw.get('format_version')!r} but this code reads "
        f"{FORMAT_VERSION}; re-run `swahili100 tokenize` with this version of swahili100.")
  if raw.get("dtype") not in ("uint16", "uint32"):
    raise RecordsError(f"{path}: dtype {raw.get('dtype')!r} must be 'uint16' or 'uint32'.")
  try:
    raw["splits"] = {k: SplitInfo(**v) for k, v in raw["splits"].items()}
    manifest = Manifest(**{k: v for k, v in raw.items() if k != "root"}, root=records_dir)
  except (KeyError, TypeError) as e:
    raise RecordsError(f"{path}: missing or unexpected field ({e}); re-run `swahili100 tokenize`.") from e
  if manifest.dtype == "uint16" and manifest.vocab_size > 2**16:
    raise RecordsError(f"{path}: vocab_size {manifest.vocab_size} does not fit dtype uint16.")
  for split, info in manifest.splits.items():
    files = [*manifest.shard_paths(records_dir, split),
             *(os.path.join(records_dir, f) for f in (info.source_index, info.cluster_size) if f)]
    for f in files:
      if not os.path.exists(f):
        raise RecordsError(f"{path} lists {f}, which is missing; re-run `swahili100 tokenize`.")
  return manifest


class SourceIndex(NamedTuple):
  """Per-record source and dedup cluster size of one split, in global record order."""
  names: list[str]               # source id -> name
  source: np.ndarray             # [documents] source id of every record
  cluster_size: np.ndarray       # [documents] dup_cluster_size of every record (0: unknown)
  counts: dict[str, dict]        # name -> {"documents", "tokens", "bytes"} in the split


def read_source_index(records_dir: str, split: str,
                      manifest: Manifest | None = None) -> SourceIndex | None:
  """The split's `SourceIndex`, or None for a manifest written before sources were recorded.

  Index i is record i of `grain.sources.ArrayRecordDataSource(manifest.shard_paths(records_dir,
  split))`: the split's shards in manifest order, one after another."""
  manifest = manifest if manifest is not None else read_manifest(records_dir)
  manifest.shard_paths(records_dir, split)   # names the fix for an unknown split
  info = manifest.splits[split]
  if manifest.sources is None or not (info.source_index and info.cluster_size):
    return None
  arrays = []
  for name in (info.source_index, info.cluster_size):
    path = os.path.join(records_dir, name)
    a = np.load(path)
    if a.shape != (info.documents,):
      raise RecordsError(f"{path} has shape {a.shape} but {MANIFEST} lists {info.documents} "
                         f"documents in split {split!r}; re-run `swahili100 tokenize`.")
    arrays.append(a)
  if len(arrays[0]) and int(arrays[0].max()) >= len(manifest.sources):
    raise RecordsError(f"{os.path.join(records_dir, info.source_index)} holds source id "
                       f"{int(arrays[0].max())} but {MANIFEST} names {len(manifest.sources)} "
                       "sources; re-run `swahili100 tokenize`.")
  return SourceIndex(list(manifest.sources), arrays[0], arrays[1], dict(info.sources or {}))
