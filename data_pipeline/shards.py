"""Text shards (phases 1-4): robust reading, atomic writing, and the per-shard phase runner.

A text shard is JSON Lines, optionally gzip (`*.jsonl` or `*.jsonl.gz`), one document a line:
`{"id": str, "text": str, "source": str, ...}`; extra keys pass through untouched.

API
---
`list_shards(root) -> list[Path]`
    Shards under a folder (recursively, sorted), or `[root]` for a file. Skips `removed/`,
    hidden files, `*.tmp` and markers, so a phase's output folder is a valid next input.
`read_shard(path, stats, *, name, max_line_bytes, removed=None) -> Iterator[dict]`
    Yields valid documents and never raises on bad data. Every bad line is counted in
    `stats` under a named reason (and written to `removed` when given, with file:line):
      binary_file     the file is not text (NUL bytes in its first 8 KiB, not gzip)
      read_error      truncated/corrupt gzip or an OS error mid-file (one count per file)
      line_too_long   a line over `max_line_bytes` (skipped in bounded memory)
      invalid_utf8    the line is not UTF-8 (dropped, not repaired: see docs/RESEARCH.md)
      malformed_json  not JSON, or JSON that is not an object (warning names file:line)
      missing_text    `text` absent or not a string
    A missing `id` becomes `"<shard name>:<line>"` (deterministic); a missing `source`
    becomes "unknown". Blank lines are not documents and are counted in notes.blank_lines.
`iter_docs(root, stats=None, *, max_line_bytes) -> Iterator[(shard_name, doc)]`
    All documents of all shards in order: the reader for global phases (dedup, tokenizer).
`ShardWriter(path)`
    Context manager writing JSON Lines to `path.tmp`, renamed onto `path` on success; gzip
    when the name ends in .gz, with mtime=0 and no file name so bytes are reproducible.
`Stats`
    Counters: docs and bytes in / out / dropped per reason, plus `bytes.rewritten` (text
    changed by the phase) so that both `in == out + sum(dropped)` and
    `bytes_in == bytes_out + sum(bytes_dropped) + rewritten` always hold. Bytes are the
    UTF-8 bytes of `text` (the raw line for lines that never parsed).
`Drop(reason, info={})`
    What a per-document function returns to remove a document.
`run_phase(phase, input, output, fn, *, workers, max_line_bytes, config, desc) -> dict`
    Runs `fn(doc) -> dict | Drop` over every input shard into the output shard of the same
    relative name. Per shard: output and `removed/<shard>` written atomically, then the
    marker `<shard>.done` (holding that shard's stats) written last, atomically. Shards with
    a marker are skipped on rerun. `stats.json` holds no timings or rerun counts, so a run
    killed and rerun writes it byte-identical to an uninterrupted run; `run.json` says how
    many shards the last invocation skipped. `--workers N` processes shards in a process pool (`pool_map`);
    results are merged in shard-name order so outputs and `stats.json` are identical for any
    N and after a SIGKILL + rerun. `fn` must be picklable (a module-level function, a
    `functools.partial` of one, or an instance of a module-level class); if it has a
    `start_shard(name)` method, that is called before the shard's first document.
`pool_map(fn, tasks, workers, ordered=False)`
    Process pool (fork) that fails with BrokenProcessPool if a worker is killed, never hangs.
`ignored_files(root)`
    Files in an input folder that are not shards (counted in notes.ignored_files, warned).
`add_common_args(parser)` / `write_json(path, obj)`
    The shared flags (--input --output --workers --max-line-bytes) and atomic JSON writing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import sys
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

SHARD_SUFFIXES = (".jsonl", ".jsonl.gz")
MARKER_SUFFIX = ".done"
REMOVED_DIR = "removed"
DEFAULT_MAX_LINE_BYTES = 8 << 20   # 8 MiB; longer lines are dropped as line_too_long
_CHUNK = 1 << 20
GZIP_LEVEL = 1   # 5x faster than 6 for +24% size on sw-news (docs/RESEARCH.md)
_KILL_ENV = "SWAHILI100_TEST_KILL_AFTER_SHARDS"   # test hook: SIGKILL mid-shard (see tests)


class Drop(NamedTuple):
  """Returned by a per-document function to remove the document, with a named reason."""
  reason: str
  info: dict = {}


@dataclass
class Stats:
  """Document and byte accounting for one shard or a whole phase."""
  docs_in: int = 0
  docs_out: int = 0
  bytes_in: int = 0
  bytes_out: int = 0
  dropped: dict = field(default_factory=dict)        # reason -> docs
  dropped_bytes: dict = field(default_factory=dict)  # reason -> bytes
  notes: dict = field(default_factory=dict)          # non-document events (blank lines, ...)
  warnings: list = field(default_factory=list)       # first few warning strings

  def drop(self, reason: str, nbytes: int) -> None:
    self.dropped[reason] = self.dropped.get(reason, 0) + 1
    self.dropped_bytes[reason] = self.dropped_bytes.get(reason, 0) + nbytes

  def note(self, key: str, n: int = 1) -> None:
    self.notes[key] = self.notes.get(key, 0) + n

  def warn(self, msg: str) -> None:
    self.note("warnings")
    if len(self.warnings) < 20:
      self.warnings.append(msg)
    warnings.warn(msg, stacklevel=2)

  def merge(self, other: "Stats") -> None:
    self.docs_in += other.docs_in
    self.docs_out += other.docs_out
    self.bytes_in += other.bytes_in
    self.bytes_out += other.bytes_out
    for src, dst in ((other.dropped, self.dropped), (other.dropped_bytes, self.dropped_bytes),
                     (other.notes, self.notes)):
      for k, v in src.items():
        dst[k] = dst.get(k, 0) + v
    self.warnings.extend(other.warnings[: max(0, 20 - len(self.warnings))])

  def to_dict(self) -> dict:
    dropped_bytes = sum(self.dropped_bytes.values())
    return {
        "docs": {"in": self.docs_in, "out": self.docs_out,
                 "dropped": dict(sorted(self.dropped.items()))},
        "bytes": {"in": self.bytes_in, "out": self.bytes_out,
                  "dropped": dict(sorted(self.dropped_bytes.items())),
                  "rewritten": self.bytes_in - self.bytes_out - dropped_bytes},
        "notes": dict(sorted(self.notes.items())),
        "warnings": list(self.warnings),
    }

  @classmethod
  def from_dict(cls, d: dict) -> "Stats":
    return cls(docs_in=d["docs"]["in"], docs_out=d["docs"]["out"], bytes_in=d["bytes"]["in"],
               bytes_out=d["bytes"]["out"], dropped=dict(d["docs"]["dropped"]),
               dropped_bytes=dict(d["bytes"]["dropped"]), notes=dict(d.get("notes", {})),
               warnings=list(d.get("warnings", [])))


# ----------------------------------------------------------------------------- listing

def is_shard(path: Path) -> bool:
  return path.name.endswith(SHARD_SUFFIXES) and not path.name.startswith(".")


def _walk(root: Path) -> Iterator[Path]:
  """Every file under `root`, skipping removed/ and hidden folders."""
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d != REMOVED_DIR and not d.startswith("."))
    yield from (Path(dirpath) / f for f in filenames)


def list_shards(root: str | os.PathLike) -> list[Path]:
  """Sorted shard files under `root` (or [root] for a file); skips removed/ and hidden dirs."""
  root = Path(root)
  if root.is_file():
    return [root]
  if not root.is_dir():
    raise FileNotFoundError(f"input {root} does not exist: pass a folder of *.jsonl(.gz) shards")
  out = [p for p in _walk(root) if is_shard(p)]
  return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def ignored_files(root: str | os.PathLike) -> list[Path]:
  """Files under `root` that are neither shards nor phase bookkeeping: reported, not read."""
  root = Path(root)
  if not root.is_dir():
    return []
  return sorted(p for p in _walk(root) if not is_shard(p) and not p.name.startswith(".")
                and not p.name.endswith((MARKER_SUFFIX, ".json", ".tmp")))


def shard_name(path: Path, root: Path) -> str:
  return path.name if root.is_file() else path.relative_to(root).as_posix()


# ----------------------------------------------------------------------------- reading

def _open_binary(path: Path):
  f = open(path, "rb")
  head = f.read(8192)
  f.seek(0)
  if head[:2] == b"\x1f\x8b":
    return gzip.GzipFile(fileobj=f, mode="rb"), False
  return f, b"\x00" in head


def _readlines(f, max_line_bytes: int) -> Iterator[tuple[bytes | None, int]]:
  """Yields (line, nbytes); line is None for a line over the cap (skipped in bounded memory)."""
  while True:
    line = f.readline(max_line_bytes + 1)
    if not line:
      return
    if len(line) <= max_line_bytes or line.endswith(b"\n"):
      yield line, len(line)
      continue
    n = len(line)
    del line
    while True:   # skip the rest of the overlong line chunk by chunk
      chunk = f.readline(_CHUNK)
      n += len(chunk)
      if not chunk or chunk.endswith(b"\n"):
        break
    yield None, n


def _removed_record(reason: str, doc: Any, info: dict) -> dict:
  return {"reason": reason, **info, "doc": doc}


def _drop_bad(stats: Stats, removed, reason: str, nbytes: int, doc: Any, warning: str | None,
              **info) -> None:
  """Counts one unreadable input under `reason`, warns, and writes it to removed/."""
  stats.bytes_in += nbytes
  stats.drop(reason, nbytes)
  if warning:
    stats.warn(warning)
  if removed is not None:
    removed(_removed_record(reason, doc, info))


def read_shard(path: str | os.PathLike, stats: Stats, *, name: str | None = None,
               max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, removed=None) -> Iterator[dict]:
  """Valid documents of one shard; bad lines are counted (and written to `removed`), never raised."""
  path = Path(path)
  name = name or path.name
  try:
    f, binary = _open_binary(path)
  except OSError as e:
    stats.docs_in += 1
    stats.drop("read_error", 0)
    stats.warn(f"{path}: cannot open ({e}); skipped")
    return
  with f:
    if binary:
      size = path.stat().st_size
      stats.docs_in += 1
      _drop_bad(stats, removed, "binary_file", size, None,
                f"{path}: binary file (NUL bytes), not a JSONL shard; skipped", file=name, bytes=size)
      return
    lineno = 0
    try:
      for line, nbytes in _readlines(f, max_line_bytes):
        lineno += 1
        where = f"{name}:{lineno}"
        if line is None:
          stats.docs_in += 1
          _drop_bad(stats, removed, "line_too_long", nbytes, None,
                    f"{where}: line of {nbytes} bytes > --max-line-bytes {max_line_bytes}; dropped",
                    where=where, bytes=nbytes)
          continue
        if not line.strip():
          stats.note("blank_lines")
          continue
        line = line.rstrip(b"\r\n")
        stats.docs_in += 1
        try:
          s = line.decode("utf-8")
        except UnicodeDecodeError as e:
          stats.note("warnings")
          _drop_bad(stats, removed, "invalid_utf8", len(line),
                    line.decode("utf-8", "backslashreplace"), None, where=where, error=str(e))
          continue
        try:
          doc = json.loads(s)
          if not isinstance(doc, dict):
            raise ValueError(f"a JSON {type(doc).__name__}, not an object")
        except ValueError as e:
          _drop_bad(stats, removed, "malformed_json", len(line), s,
                    f"{where}: malformed JSON line ({str(e)[:80]}); dropped to removed/", where=where)
          continue
        text = doc.get("text")
        if not isinstance(text, str):
          _drop_bad(stats, removed, "missing_text", len(line), doc, None, where=where)
          continue
        stats.bytes_in += text_bytes(doc)
        if not isinstance(doc.get("id"), str) or not doc["id"]:
          if "id" in doc and doc["id"] is not None:
            doc["id"] = str(doc["id"])
          else:
            doc["id"] = where
            stats.note("assigned_id")
        if not isinstance(doc.get("source"), str):
          doc["source"] = "unknown"
        yield doc
    except (EOFError, OSError, zlib.error) as e:
      stats.docs_in += 1
      stats.drop("read_error", 0)
      stats.warn(f"{name}: read error after line {lineno} ({e}); rest of file skipped")


def text_bytes(doc: dict) -> int:
  return len(doc["text"].encode("utf-8", "surrogatepass"))


def iter_docs(root: str | os.PathLike, stats: Stats | None = None, *,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[str, dict]]:
  """(shard name, doc) for every valid document under `root`, in shard order."""
  root = Path(root)
  stats = stats if stats is not None else Stats()
  for path in list_shards(root):
    name = shard_name(path, root)
    for doc in read_shard(path, stats, name=name, max_line_bytes=max_line_bytes):
      yield name, doc


# ----------------------------------------------------------------------------- writing

def dumps(obj: Any) -> str:
  return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class ShardWriter:
  """Atomic JSONL writer: `<path>.tmp` renamed onto `path` on clean exit; byte-stable gzip."""

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    self.tmp = self.path.with_name(self.path.name + ".tmp")
    self.count = 0
    self.nbytes = 0

  def __enter__(self) -> "ShardWriter":
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._raw = open(self.tmp, "wb")
    if self.path.name.endswith(".gz"):
      self._f = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=GZIP_LEVEL)
    else:
      self._f = self._raw
    return self

  def write(self, obj: dict) -> None:
    data = (dumps(obj) + "\n").encode("utf-8", "surrogatepass")
    self._f.write(data)
    self.count += 1
    self.nbytes += len(data)

  def __exit__(self, exc_type, exc, tb) -> None:
    if self._f is not self._raw:
      self._f.close()
    if exc_type is None:
      self._raw.flush()
      os.fsync(self._raw.fileno())
    self._raw.close()
    if exc_type is None:
      os.replace(self.tmp, self.path)
    else:
      self.tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Atomic JSON file write (tmp + rename)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
  os.replace(tmp, path)


# ----------------------------------------------------------------------------- phase runner

def _marker(output: Path, name: str) -> Path:
  return output / (name + MARKER_SUFFIX)


def _maybe_test_kill(done_before: int) -> bool:
  k = os.environ.get(_KILL_ENV)
  return k is not None and done_before >= int(k)


def process_shard(args) -> tuple[str, dict]:
  """Worker: one input shard -> output shard + removed/ shard + marker. Returns its stats."""
  path, name, output, fn, max_line_bytes, index = args
  stats = Stats()
  out_path = output / name
  removed_path = output / REMOVED_DIR / name
  kill = _maybe_test_kill(index)
  if hasattr(fn, "start_shard"):
    fn.start_shard(name)
  with ShardWriter(out_path) as w, ShardWriter(removed_path) as rw:
    for doc in read_shard(path, stats, name=name, max_line_bytes=max_line_bytes,
                          removed=rw.write):
      nbytes = text_bytes(doc)
      try:
        result = fn(doc)
      except Exception as e:   # a bug on one document must not lose it silently
        result = Drop("error", {"error": f"{type(e).__name__}: {e}"})
        stats.warn(f"{name}: {doc.get('id')}: {type(e).__name__}: {e}")
      if isinstance(result, Drop):
        stats.drop(result.reason, nbytes)
        rw.write(_removed_record(result.reason, doc, result.info))
      else:
        stats.docs_out += 1
        stats.bytes_out += text_bytes(result)
        w.write(result)
      if kill and w.count >= 1:
        os.kill(os.getpid(), 9)
  d = stats.to_dict()
  write_json(_marker(output, name), d)
  return name, d


def pool_map(fn: Callable, tasks: list, workers: int, *, ordered: bool = False) -> Iterator:
  """`fn` over `tasks` in up to `workers` forked processes (in-process for 1), unordered unless
  `ordered`. A worker killed by the OS raises BrokenProcessPool instead of hanging the phase;
  the shards finished before it keep their markers, so a rerun resumes."""
  if workers <= 1 or len(tasks) <= 1:
    yield from map(fn, tasks)
    return
  from concurrent.futures import ProcessPoolExecutor, as_completed
  ctx = multiprocessing.get_context("fork")
  with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx) as ex:
    if ordered:
      yield from ex.map(fn, tasks)
    else:
      for f in as_completed([ex.submit(fn, t) for t in tasks]):
        yield f.result()


def run_phase(phase: str, input: str | os.PathLike, output: str | os.PathLike,
              fn: Callable[[dict], dict | Drop], *, workers: int = 1,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, config: dict | None = None,
              desc: str | None = None, extra_stats: dict | None = None) -> dict:
  """Maps `fn` over all shards of `input` into `output` (1:1 names); writes stats.json."""
  root, output = Path(input), Path(output)
  paths = list_shards(root)
  if not paths:
    raise FileNotFoundError(f"no *.jsonl / *.jsonl.gz shards under {root}")
  output.mkdir(parents=True, exist_ok=True)
  names = [shard_name(p, root) for p in paths]
  results: dict[str, dict] = {}
  todo = []
  for i, (p, n) in enumerate(zip(paths, names)):
    m = _marker(output, n)
    if m.exists():
      results[n] = json.loads(m.read_text())
    else:
      todo.append((p, n, output, fn, max_line_bytes, i))
  skipped = len(results)
  from tqdm import tqdm
  bar = tqdm(total=len(paths), initial=skipped, desc=desc or phase, unit="shard",
             file=sys.stderr, disable=None)
  for n, d in pool_map(process_shard, todo, workers):
    results[n] = d
    bar.update(1)
  bar.close()
  total = Stats()
  for n in names:
    total.merge(Stats.from_dict(results[n]))
  skipped_files = ignored_files(root)
  if skipped_files:   # not documents we lose: files that are not shards at all
    total.note("ignored_files", len(skipped_files))
    total.warn(f"{root}: {len(skipped_files)} file(s) are not *.jsonl(.gz) shards and were not "
               f"read, e.g. {skipped_files[0].relative_to(root)}")
  if skipped:
    print(f"{phase}: {skipped} of {len(names)} shards already complete, skipped", file=sys.stderr)
  write_json(output / "run.json", {"phase": phase, "shards": len(names), "shards_skipped": skipped})
  # stats.json holds no timings or rerun counts: a rerun after SIGKILL writes identical bytes
  out = {"phase": phase, "input": str(root), "shards": len(names),
         **total.to_dict(), "config": config or {}}
  if extra_stats:
    out.update(extra_stats)
  write_json(output / "stats.json", out)
  return out


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, cfg, section: str,
               flags: tuple[str, ...] = ()) -> argparse.Namespace:
  """A data phase's command line: `parser`'s flags, then `--config.<section>.<key>=value`
  overrides of the data config (unknown keys refused, by `config_lib`), then each flag in `flags`
  that was given (None means not given) copied into `cfg[section]`, so explicit flags win."""
  from swahili100 import config_lib  # noqa: PLC0415
  args, extra = parser.parse_known_args(argv)
  try:
    config_lib.apply_overrides(cfg, extra, check=False)
  except config_lib.ConfigError as e:
    parser.error(str(e))
  for key in flags:
    if getattr(args, key) is not None:
      cfg[section][key] = getattr(args, key)
  return args


def add_common_args(p: argparse.ArgumentParser, *, input_required: bool = True) -> None:
  p.add_argument("--input", required=input_required, help="folder (or file) of *.jsonl(.gz) shards")
  p.add_argument("--output", required=True, help="output folder (shards, removed/, stats.json)")
  p.add_argument("--workers", type=int, default=1, help="worker processes over shards")
  p.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
                 help="lines longer than this are dropped as line_too_long")


def summary(stats: dict) -> str:
  d = stats["docs"]
  return (f"{stats['phase']}: {d['in']} docs in, {d['out']} out, dropped {d['dropped']} "
          f"({stats['bytes']['in'] / 1e6:.1f} MB in, {stats['bytes']['out'] / 1e6:.1f} MB out)")
