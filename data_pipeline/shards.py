"""Text shards (phases 1-6): robust reading, atomic writing, the unit runner and the phase CLI.

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
`run_units(tasks, work, *, workers, start_method, desc, unit, valid, adjust) -> Ran`
    The one resumable runner of every phase (download units, clean/dedup/filter shards, dedup
    signatures, tokenize's encode step). A `Unit(name, marker, args)` runs `work(args) -> dict`;
    the runner then writes that dict as the unit's marker, last and atomically. Tasks with a
    marker are skipped on rerun (`valid` may reject a marker, e.g. another commit of a Hub
    file). `workers > 1` runs tasks in a process pool (`pool_map`, start method "fork" or
    "spawn"); results come back in task order, so outputs are identical for any N and after a
    SIGKILL + rerun. `work` and `args` must be picklable (module-level functions, partials of
    them, instances of module-level classes).
`run_phase(phase, input, output, fn, *, workers, max_line_bytes, start_method, config, desc)`
    `run_units` over every input shard: `fn(doc) -> dict | Drop` writes the output shard of the
    same relative name and `removed/<shard>` (both atomically), the marker `<shard>.done` holds
    that shard's stats. `stats.json` holds no timings or rerun counts, so a run killed and rerun
    writes it byte-identical to an uninterrupted run; `run.json` says how many shards the last
    invocation skipped. If `fn` has a `start_shard(name)` method, it is called before the
    shard's first document.
`pool_map(fn, tasks, workers, *, start_method)`
    Process pool that fails with BrokenProcessPool if a worker is killed, never hangs.
`set_event_hook(fn)` / `event(name, **info)`
    Named points ("unit_progress", "unit_done", "decide_shard_done") for tests' fault injection;
    no hook is installed outside tests.
`parse_cli(argv, prog, doc, section, flags, *, common)`
    Every data phase's command line: the common flags (--input --output --workers
    --max-line-bytes), the phase's own, `--config.<section>.<key>=value` overrides of
    configs/pipeline.py; a short flag is its config field under another name (both at once:
    refused).
`ignored_files(root)` / `total_stats(root, results)` / `write_json(path, obj)`
    Files in an input folder that are not shards (counted in notes.ignored_files, warned), the
    merged stats of a phase's units, and atomic JSON writing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import sys
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from tqdm import tqdm

from configs import pipeline as pipeline_config
from swahili100 import config_lib

SHARD_SUFFIXES = (".jsonl", ".jsonl.gz")
MARKER_SUFFIX = ".done"
REMOVED_DIR = "removed"
DEFAULT_MAX_LINE_BYTES = 8 << 20   # 8 MiB; longer lines are dropped as line_too_long
_CHUNK = 1 << 20
GZIP_LEVEL = 1   # 5x faster than 6 for +24% size on sw-news (docs/RESEARCH.md)


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


# ----------------------------------------------------------------------------- events

# Module globals on purpose: a named point must reach pool workers (through the initializer)
# without a parameter threaded through every phase; production never installs a hook.
_hook: Callable[..., None] | None = None
_where: dict = {}   # the unit this process is running ({"unit", "index"}), added to every event


def set_event_hook(fn: Callable[..., None] | None) -> Callable[..., None] | None:
  """Installs `fn(event, **info)`, called at the runner's named points; returns the old hook.

  Production code installs none, so `event` costs one global lookup. Tests install one that
  SIGKILLs the process at a chosen point (tests/fault_hooks.py). Worker processes receive the hook
  through the pool initializer, so under "spawn" it must be picklable."""
  global _hook
  old, _hook = _hook, fn
  return old


def event(name: str, **info) -> None:
  """A named point, with the current unit's name and index: "unit_progress" (a unit wrote output),
  "unit_done" (its marker is written), "decide_shard_done" (dedup pass 2 wrote a decision list)."""
  if _hook is not None:
    _hook(name, **{**_where, **info})


# ----------------------------------------------------------------------------- unit runner

class Unit(NamedTuple):
  """One unit of work of `run_units`."""
  name: str     # its result's key: shard name, download unit key
  marker: Path  # `<...>.done`: the unit's result, written last and atomically
  args: Any     # what the worker function receives (picklable)


class Ran(NamedTuple):
  """What `run_units` returns."""
  results: dict    # task name -> result, in task order (every task done now or before)
  skipped: set     # names whose marker was found: not run by this invocation


def _run_task(job) -> tuple[str, dict]:
  """Worker: one task, then its marker (last); events name the unit."""
  global _where
  index, task, work = job
  _where = {"unit": task.name, "index": index}
  try:
    result = work(task.args)
    write_json(task.marker, result)
  finally:
    _where = {}
  event("unit_done", unit=task.name, index=index)
  return task.name, result


def pool_map(fn: Callable, tasks: list, workers: int, *, start_method: str = "fork") -> Iterator:
  """`fn` over `tasks` in up to `workers` processes (in this process for 1), in completion order.
  A worker killed by the OS raises BrokenProcessPool instead of hanging the phase; the units
  finished before it keep their markers, so a rerun resumes."""
  if workers <= 1 or len(tasks) <= 1:
    yield from map(fn, tasks)
    return
  ctx = multiprocessing.get_context(start_method)
  with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx,
                           initializer=set_event_hook, initargs=(_hook,)) as ex:
    for f in as_completed([ex.submit(fn, t) for t in tasks]):
      yield f.result()


def run_units(tasks: list[Unit], work: Callable[[Any], dict], *, workers: int = 1,
              start_method: str = "fork", desc: str = "units", unit: str = "shard",
              valid: Callable[[Unit, dict], bool] | None = None,
              adjust: Callable[[Unit, dict], Unit | None] | None = None) -> Ran:
  """Runs `work(task.args) -> dict` for every task without a marker, then writes its marker.

  A marker that `valid(task, result)` rejects (another input version) is redone. With `adjust`,
  the tasks run one after another in this process and `adjust(task, results so far)` returns the
  task to run (e.g. with what is left of a document budget) or None to stop there. Results come
  back in task order whatever the order of completion, so callers that merge them in that order
  write identical bytes for any `workers` and after a SIGKILL + rerun."""
  results: dict[str, dict] = {}
  for t in tasks:
    if t.marker.exists():
      d = json.loads(t.marker.read_text())
      if valid is None or valid(t, d):
        results[t.name] = d
  skipped = set(results)
  todo = [(i, t, work) for i, t in enumerate(tasks) if t.name not in results]
  bar = tqdm(total=len(tasks), initial=len(skipped), desc=desc, unit=unit, file=sys.stderr,
             disable=None)
  if adjust is not None:
    for i, t, _ in todo:
      t = adjust(t, results)
      if t is None:
        break
      name, d = _run_task((i, t, work))
      results[name] = d
      bar.update(1)
  else:
    for name, d in pool_map(_run_task, todo, workers, start_method=start_method):
      results[name] = d
      bar.update(1)
  bar.close()
  if skipped:
    print(f"{desc}: {len(skipped)} of {len(tasks)} {unit}s already complete, skipped",
          file=sys.stderr)
  return Ran({t.name: results[t.name] for t in tasks if t.name in results}, skipped)


def total_stats(root: Path, results: dict) -> Stats:
  """The units' stats merged in their order, plus the input files that are not shards at all
  (counted in notes.ignored_files and warned: not documents we lose)."""
  total = Stats()
  for d in results.values():
    total.merge(Stats.from_dict(d))
  skipped_files = ignored_files(root)
  if skipped_files:
    total.note("ignored_files", len(skipped_files))
    total.warn(f"{root}: {len(skipped_files)} file(s) are not *.jsonl(.gz) shards and were not "
               f"read, e.g. {skipped_files[0].relative_to(root)}")
  return total


def wait_for(tasks: list[Unit], timeout_s: float, who: str, processes: int,
             valid: Callable[[Unit, dict], bool] | None = None,
             timeout_flag: str = "--config.dedup.wait_timeout_s") -> None:
  """Waits until every task has a (valid) marker, written by the process that owns it (task k
  belongs to process k % processes); a clear error after `timeout_s`."""
  deadline = time.monotonic() + timeout_s
  while True:
    missing = [k for k, t in enumerate(tasks) if not _finished(t, valid)]
    if not missing:
      return
    if time.monotonic() > deadline:
      k = missing[0]
      raise TimeoutError(
          f"{who}: waited {timeout_s:.0f} s for {len(missing)} shard(s) of the other processes, "
          f"e.g. {tasks[k].name} (process {k % processes}); start that process again with the "
          f"same command and --process-id {k % processes}, or raise {timeout_flag}")
    time.sleep(0.5)


def _finished(t: Unit, valid: Callable[[Unit, dict], bool] | None) -> bool:
  try:
    return t.marker.exists() and (valid is None or valid(t, json.loads(t.marker.read_text())))
  except (OSError, ValueError):   # being replaced right now
    return False


def shard_tasks(root: Path, markers: Path, args: Callable[[Path, str], Any]) -> list[Unit]:
  """One task per input shard of `root` (`args(path, name)`), its marker
  `<markers>/<shard name>.done`."""
  paths = list_shards(root)
  if not paths:
    raise FileNotFoundError(f"no *.jsonl / *.jsonl.gz shards under {root}")
  names = [shard_name(p, root) for p in paths]
  return [Unit(n, markers / (n + MARKER_SUFFIX), args(p, n)) for p, n in zip(paths, names)]


# ----------------------------------------------------------------------------- per-shard phases

def process_shard(args) -> dict:
  """Worker: one input shard -> output shard + removed/ shard. Returns its stats."""
  path, name, output, fn, max_line_bytes = args
  stats = Stats()
  if hasattr(fn, "start_shard"):
    fn.start_shard(name)
  with ShardWriter(output / name) as w, ShardWriter(output / REMOVED_DIR / name) as rw:
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
        event("unit_progress", docs=w.count)
  return stats.to_dict()


def run_phase(phase: str, input: str | os.PathLike, output: str | os.PathLike,
              fn: Callable[[dict], dict | Drop], *, workers: int = 1,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, start_method: str = "fork",
              config: dict | None = None, desc: str | None = None,
              extra_stats: dict | None = None, share: tuple[int, int] = (0, 1),
              wait_timeout_s: float = 0) -> dict:
  """Maps `fn` over all shards of `input` into `output` (1:1 names); writes stats.json.

  With `share=(i, n)`, this process writes only shards i, i+n, ... (several processes or
  machines over one shared folder); process 0 then waits for the others' markers (up to
  `wait_timeout_s`) and writes the totals. Other processes return their share's stats only."""
  root, output = Path(input), Path(output)
  tasks = shard_tasks(root, output, lambda p, n: (p, n, output, fn, max_line_bytes))
  output.mkdir(parents=True, exist_ok=True)
  i, n = share
  if n > 1:
    mine = run_units(tasks[i::n], process_shard, workers=workers, start_method=start_method,
                     desc=f"{desc or phase} (process {i} of {n})")
    if i != 0:
      return {"phase": phase, "share": [i, n], **total_stats(root, mine.results).to_dict()}
    wait_for(tasks, wait_timeout_s, f"{phase} process 0", n)
  ran = run_units(tasks, process_shard, workers=workers, start_method=start_method,
                  desc=desc or phase)
  total = total_stats(root, ran.results)
  write_json(output / "run.json", {"phase": phase, "shards": len(tasks),
                                   "shards_skipped": len(ran.skipped)})
  # stats.json holds no timings or rerun counts: a rerun after SIGKILL writes identical bytes
  out = {"phase": phase, "input": str(root), "shards": len(tasks),
         **total.to_dict(), "config": config or {}}
  if extra_stats:
    out.update(extra_stats)
  write_json(output / "stats.json", out)
  return out


# ----------------------------------------------------------------------------- command line

COMMON_FLAGS = ("input", "output", "workers", "max_line_bytes")


def parse_cli(argv: list[str] | None, prog: str, doc: str, section: str,
              flags: Callable[[argparse.ArgumentParser, Any], None] | None = None, *,
              common: tuple[str, ...] = COMMON_FLAGS,
              check: Callable[[argparse.Namespace], str | None] | None = None,
              ) -> tuple[argparse.Namespace, Any]:
  """Every data phase's command line; returns (args, data config).

  The parser gets the `common` flags and the phase's own (`flags(parser, cfg)`; a flag that sets a
  config key defaults to None, meaning not given). A flag named like a key of `section` or
  `runner` is another spelling of that field: it becomes `--config.<section>.<key>=value` and is
  applied with the other overrides of configs/pipeline.py; setting one field both ways, or an
  unknown key or bad value, is refused through `parser.error`. `check(args)` may return a usage
  error, reported like argparse's own."""
  cfg = pipeline_config.get_config()
  r = cfg.runner
  p = argparse.ArgumentParser(
      prog=f"swahili100 {prog}", description=doc.split("\n")[0],
      epilog=f"Any setting of configs/pipeline.py: --config.{section}.<key>=<value> "
             "(and --config.runner.<key> for the unit runner).")
  if "input" in common:
    p.add_argument("--input", required=True, help="folder (or file) of *.jsonl(.gz) shards")
  if "output" in common:
    p.add_argument("--output", required=True, help="output folder (shards, removed/, stats.json)")
  if "workers" in common:
    p.add_argument("--workers", type=int, default=None,
                   help=f"worker processes over units (default {r.workers})")
  if "max_line_bytes" in common:
    p.add_argument("--max-line-bytes", type=int, default=None,
                   help=f"longer lines are dropped as line_too_long (default {r.max_line_bytes})")
  if flags is not None:
    flags(p, cfg)
  args, extra = p.parse_known_args(argv)
  given = {}   # the short flags given, as the config fields they name
  for key, value in vars(args).items():
    node = next((s for s in (section, "runner") if key in cfg[s]), None)
    if value is not None and node is not None:
      given[f"{node}.{key}"] = ("--" + key.replace("_", "-"), value)
  try:
    config_lib.apply_overrides(cfg, config_lib.aliases(given, extra) + extra, check=False)
  except config_lib.ConfigError as e:
    p.error(str(e))
  error = check(args) if check is not None else None
  if error:
    p.error(error)
  return args, cfg


def summary(stats: dict) -> str:
  d = stats["docs"]
  return (f"{stats['phase']}: {d['in']} docs in, {d['out']} out, dropped {d['dropped']} "
          f"({stats['bytes']['in'] / 1e6:.1f} MB in, {stats['bytes']['out'] / 1e6:.1f} MB out)")
