"""Phase 1: fetch raw Swahili text from a registry of sources into JSONL shards with provenance.

  swahili100 download --source sample --output data/raw                 # embedded corpus, offline
  swahili100 download --source local --path my_texts/ --output data/raw  # txt, jsonl(.gz), parquet
  swahili100 download --source fineweb2 --output data/raw --max-docs 100000 --workers 2
  swahili100 download --source all --output data/raw                    # every remote source

Sources (`SOURCES`): Hugging Face Hub datasets (FineWeb-2 swh_Latn, Wikipedia 20231101.sw,
MADLAD-400 sw, HPLT 2.0 swh_Latn, Swahili news) are listed with `HfApi` at a pinned commit and
fetched file by file with `hf_hub_download` (the Hub cache resumes interrupted downloads; with
`HF_HUB_OFFLINE=1` or no network a pre-populated cache is used); CC-100 sw is a plain URL fetched
with HTTP Range resume; `tfds_wikipedia` goes through `tensorflow-datasets` (no TensorFlow needed).
Rows are streamed in batches (pyarrow for parquet, line by line for JSON Lines) into
`<output>/<source>/<unit>-<part>.jsonl.gz` shards of at most `--shard-docs` documents, so memory
stays bounded. Each document carries `source`, `origin` (repo@commit/file or URL) and `licence`;
`stats.json` carries the same per source. One unit (a remote file, a local file) is written
atomically and then marked `<unit>.done`; a rerun skips marked units. Rows without text go to
`removed/` with their reason. Without network a remote source fails in one line that points to
`--source sample` or `--source local --path`; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import gzip
import io
import json
import lzma
import os
import re
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

try:   # optional: only .jsonl.zst inputs need it
  import zstandard
except ImportError:
  zstandard = None

from data_pipeline import shards

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


@dataclasses.dataclass(frozen=True)
class Source:
  """One entry of the registry; `kind` picks the loader (hf, url, tfds)."""
  name: str
  kind: str
  licence: str
  repo: str = ""                 # hf: dataset repo id
  revision: str = "main"         # hf: branch, tag or commit (resolved to a commit and recorded)
  patterns: tuple = ()           # hf: fnmatch patterns over the repo's files
  text_field: str = "text"
  url: str = ""                  # url: the file to fetch (.xz / .gz / plain text)
  tfds_name: str = ""            # tfds: builder name with config


SOURCES = {s.name: s for s in [
    Source("fineweb2", "hf", "ODC-By 1.0 (and Common Crawl terms of use)",
           repo="HuggingFaceFW/fineweb-2", patterns=("data/swh_Latn/train/*.parquet",)),
    Source("wikipedia", "hf", "CC BY-SA 3.0 and GFDL",
           repo="wikimedia/wikipedia", patterns=("20231101.sw/*.parquet",)),
    Source("madlad400", "hf", "ODC-By 1.0 (and Common Crawl terms of use)",
           repo="allenai/madlad-400", patterns=("data/sw/sw_clean_*.jsonl.gz",)),
    Source("cc100", "url", "Common Crawl terms of use (no IP claimed by the CC-100 authors)",
           url="https://data.statmt.org/cc-100/sw.txt.xz"),
    Source("hplt", "hf", "CC0 1.0 (HPLT; and the crawl's terms of use)",
           repo="HPLT/HPLT2.0_cleaned", patterns=("swh_Latn/*.parquet", "swh_Latn/*.jsonl*")),
    Source("swahili_news", "hf", "CC BY 4.0",
           repo="community-datasets/swahili_news", patterns=("*.parquet",)),
    Source("tfds_wikipedia", "tfds", "CC BY-SA 3.0 and GFDL", tfds_name="wikipedia/20230601.sw"),
]}
# `all` = every remote source except tfds_wikipedia, which is a second route to Wikipedia.
ALL = ("fineweb2", "wikipedia", "madlad400", "cc100", "hplt", "swahili_news")
_JSONL = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
_META_FIELDS = ("url", "title", "date", "dump")   # row fields kept beside the text when present


class SourceUnavailable(RuntimeError):
  """A remote source cannot be reached and is not cached: the message is one line."""


def _offline_hint(name: str, why: str) -> str:
  why = " ".join(str(why).split())[:240]
  return (f"download: source {name!r} unavailable ({why}); offline, use `--source sample` "
          f"or `--source local --path DIR`")


# ----------------------------------------------------------------------------- row readers

def _rows_parquet(path: Path, text_field: str, batch: int = 1024) -> Iterator[dict]:
  import pyarrow.parquet as pq
  f = pq.ParquetFile(path)
  names = set(f.schema_arrow.names)
  cols = [c for c in (text_field, "id", *_META_FIELDS) if c in names]
  for b in f.iter_batches(batch_size=batch, columns=cols):
    yield from b.to_pylist()


def _rows_text(f, mode: str) -> Iterator[dict]:
  """Plain text: one document per file, per blank-line-separated paragraph, or per line."""
  if mode == "file":
    yield {"text": f.read()}
    return
  buf: list[str] = []
  for line in f:
    if mode == "line":
      if line.strip():
        yield {"text": line.rstrip("\n")}
      continue
    if line.strip():
      buf.append(line.rstrip("\n"))
    elif buf:
      yield {"text": "\n".join(buf)}
      buf = []
  if buf:
    yield {"text": "\n".join(buf)}


def _open_text(path: Path):
  if path.name.endswith(".xz"):
    return lzma.open(path, "rt", encoding="utf-8", errors="replace")
  if path.name.endswith(".gz"):
    return gzip.open(path, "rt", encoding="utf-8", errors="replace")
  return open(path, encoding="utf-8", errors="replace")


# ----------------------------------------------------------------------------- unit writer

@dataclasses.dataclass
class InputFile:
  """One input file of a source -> `<output>/<source>/<key>-<part>.jsonl.gz` shards."""
  source: str
  key: str            # output stem, unique within the source
  fetch: tuple        # (kind, args...) resolved in the worker
  origin: str         # provenance string written on every document
  licence: str
  max_docs: int | None = None


def _unit_marker(out: Path, u: InputFile) -> Path:
  return out / u.source / (u.key + shards.MARKER_SUFFIX)


def _fetch(u: InputFile, out: Path) -> Path:
  kind = u.fetch[0]
  if kind == "hf":
    _, repo, filename, commit, cache_dir = u.fetch
    from huggingface_hub import hf_hub_download
    return Path(hf_hub_download(repo, filename, repo_type="dataset", revision=commit,
                                cache_dir=cache_dir))
  if kind == "url":
    return fetch_url(u.fetch[1], out / ".cache" / u.source)
  return Path(u.fetch[1])   # local


def _rows(u: InputFile, path: Path, text_field: str, txt_mode: str, stats: shards.Stats,
          removed, max_line_bytes: int) -> Iterator[dict]:
  n = path.name
  if n.endswith(".parquet"):
    yield from _rows_parquet(path, text_field)
  elif n.endswith(_JSONL) and u.fetch[0] != "url":
    yield from shards.read_shard(path, stats, name=f"{u.source}/{path.name}", removed=removed,
                                 max_line_bytes=max_line_bytes)
  elif n.endswith(".jsonl.zst"):
    if zstandard is None:
      raise SourceUnavailable(f"{n}: .zst needs `pip install zstandard`")
    with open(path, "rb") as raw:
      r = zstandard.ZstdDecompressor().stream_reader(raw)
      yield from _rows_jsonl_stream(io.TextIOWrapper(r, encoding="utf-8", errors="replace"))
  else:
    with _open_text(path) as f:
      yield from _rows_text(f, "paragraph" if u.fetch[0] == "url" else txt_mode)


def _rows_jsonl_stream(f) -> Iterator[dict]:
  """JSON Lines from a text stream; a bad line becomes a row marked `_drop` (counted, removed/)."""
  for line in f:
    if not line.strip():
      continue
    try:
      d = json.loads(line)
    except ValueError:
      d = None
    yield d if isinstance(d, dict) else {"_drop": "malformed_json", "raw": line[:1000]}


def process_unit(args) -> dict:
  """Worker: fetch one unit and stream its rows into shards; returns its stats (the marker)."""
  u, out, text_field, txt_mode, shard_docs, max_line_bytes = args
  stats = shards.Stats()
  folder = out / u.source
  removed_path = out / shards.REMOVED_DIR / u.source / (u.key + ".jsonl.gz")
  if u.fetch[0] == "tfds":
    path, rows = None, _tfds_rows(u.fetch[1], u.fetch[2])
  else:
    path = _fetch(u, out)
  counted = path is not None and u.fetch[0] != "url" and path.name.endswith(_JSONL)
  for stale in folder.glob(f"{u.key}-[0-9][0-9][0-9][0-9][0-9].jsonl.gz"):
    stale.unlink()   # parts of an interrupted attempt or of an earlier commit
  part, w, written = 0, None, []
  with shards.ShardWriter(removed_path) as rw:
    try:
      if path is not None:
        rows = _rows(u, path, text_field, txt_mode, stats, rw.write, max_line_bytes)
      for i, row in enumerate(rows):
        text = row.get(text_field, row.get("text"))
        nbytes = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else 0
        if not counted:   # JSON Lines rows were counted (and bad lines dropped) by read_shard
          stats.docs_in += 1
          stats.bytes_in += nbytes
        if not isinstance(text, str) or not text.strip():
          reason = row.get("_drop", "empty_text")
          stats.drop(reason, nbytes)
          rw.write({"reason": reason, "where": f"{u.origin}#{i}", "doc": _jsonable(row)})
          continue
        rid = row.get("id")
        doc = {"id": f"{u.source}:{rid if rid not in (None, '') else f'{u.key}:{i}'}",
               "text": text, "source": u.source, "origin": u.origin, "licence": u.licence}
        for k in _META_FIELDS:
          if row.get(k) not in (None, ""):
            doc[k] = _jsonable(row[k])
        if w is None or w.count >= shard_docs:
          if w is not None:
            w.__exit__(None, None, None)
            part += 1
          w = shards.ShardWriter(folder / f"{u.key}-{part:05d}.jsonl.gz").__enter__()
          written.append(w.path.name)
        w.write(doc)
        stats.docs_out += 1
        stats.bytes_out += nbytes
        shards.event("unit_progress", docs=stats.docs_out)
        if u.max_docs is not None and stats.docs_out >= u.max_docs:
          break   # before the next row is read, so in == out + dropped still holds
    except BaseException as e:
      if w is not None:
        w.__exit__(type(e), e, None)
      raise
    if w is not None:
      w.__exit__(None, None, None)
  return {**stats.to_dict(), "origin": u.origin, "licence": u.licence, "shards": written}


def _jsonable(v):
  if isinstance(v, (str, int, float, bool)) or v is None:
    return v
  if isinstance(v, dict):
    return {str(k): _jsonable(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  return str(v)


# ----------------------------------------------------------------------------- source resolvers

def _is_offline_error(e: BaseException) -> bool:
  from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
  names = {type(c).__name__ for c in _chain(e)}
  return (isinstance(e, (OfflineModeIsEnabled, LocalEntryNotFoundError, OSError))
          or bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException",
                           "OfflineModeIsEnabled", "RemoteProtocolError", "ProxyError"}))


def _chain(e: BaseException | None):
  while e is not None:
    yield e
    e = e.__cause__ or e.__context__


def _cached_snapshot(repo: str, revision: str, cache_dir: str | None) -> tuple[str, list[str]]:
  """(commit, files) of a repo snapshot in the local Hub cache, for offline use."""
  from huggingface_hub import constants
  root = Path(cache_dir or constants.HF_HUB_CACHE) / ("datasets--" + repo.replace("/", "--"))
  ref = root / "refs" / revision
  commit = ref.read_text().strip() if ref.is_file() else revision
  snap = root / "snapshots" / commit
  if not snap.is_dir():
    raise FileNotFoundError(f"no cached snapshot of {repo}@{revision} under {root}")
  files = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
  return commit, files


def resolve_hf(src: Source, *, cache_dir: str | None, revision: str | None) -> tuple[str, list[str]]:
  """(commit, matching files) from the Hub, or from the local cache when offline."""
  from huggingface_hub import HfApi, constants
  rev = revision or src.revision
  try:
    if constants.HF_HUB_OFFLINE:
      from huggingface_hub.errors import OfflineModeIsEnabled
      raise OfflineModeIsEnabled("HF_HUB_OFFLINE=1")
    api = HfApi()
    commit = api.dataset_info(src.repo, revision=rev, timeout=15).sha or rev
    files = api.list_repo_files(src.repo, repo_type="dataset", revision=commit)
  except Exception as e:
    if not _is_offline_error(e):
      raise
    try:
      commit, files = _cached_snapshot(src.repo, rev, cache_dir)
    except FileNotFoundError:
      raise SourceUnavailable(_offline_hint(src.name, f"Hub unreachable: {type(e).__name__}; "
                                            f"no cached snapshot of {src.repo}@{rev}")) from e
  files = sorted(f for f in files if any(fnmatch.fnmatch(f, p) for p in src.patterns))
  if not files:
    raise SourceUnavailable(f"download: source {src.name!r}: no file of {src.repo}@{rev} "
                            f"matches {list(src.patterns)}")
  return commit, files


def fetch_url(url: str, folder: Path, *, timeout: float = 15) -> Path:
  """Downloads `url` into `folder`, resuming a partial `.part` file with an HTTP Range request."""
  folder.mkdir(parents=True, exist_ok=True)
  dest = folder / Path(url.split("?")[0]).name
  if dest.exists():
    return dest
  part = dest.with_name(dest.name + ".part")
  have = part.stat().st_size if part.exists() else 0
  req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
  with urllib.request.urlopen(req, timeout=timeout) as r:
    status = getattr(r, "status", None) or 200
    mode = "ab" if have and status == 206 else "wb"
    total = r.headers.get("Content-Length")
    with open(part, mode) as f, tqdm(total=int(total) if total else None, unit="B",
                                     unit_scale=True, desc=dest.name, file=sys.stderr,
                                     disable=None) as bar:
      while chunk := r.read(1 << 20):
        f.write(chunk)
        bar.update(len(chunk))
  os.replace(part, dest)
  return dest


def unit_key(rel: str) -> str:
  """Output stem of one input file: its path with separators flattened, extensions dropped."""
  stem = rel
  for ext in (".gz", ".xz", ".zst", ".parquet", ".jsonl", ".json", ".txt"):
    stem = stem[: -len(ext)] if stem.endswith(ext) else stem
  return re.sub(r"[^\w.-]+", "_", stem).strip("_") or "unit"


def units_for(src: Source, out: Path, dl) -> tuple[list[InputFile], dict]:
  """The units (files) of one source and its provenance record; raises SourceUnavailable.
  `dl` is the `download` section of configs/pipeline.py (cache_dir, revision)."""
  if src.kind == "hf":
    commit, files = resolve_hf(src, cache_dir=dl.cache_dir, revision=dl.revision)
    units = [InputFile(src.name, unit_key(f), ("hf", src.repo, f, commit, dl.cache_dir),
                  f"hf://datasets/{src.repo}@{commit}/{f}", src.licence) for f in files]
    return units, {"repo": src.repo, "revision": commit, "files": files, "licence": src.licence}
  if src.kind == "url":
    dest = out / ".cache" / src.name / Path(src.url).name
    if not dest.exists():
      try:
        fetch_url(src.url, out / ".cache" / src.name)
      except OSError as e:
        raise SourceUnavailable(_offline_hint(src.name, f"{src.url}: {e}")) from e
    return ([InputFile(src.name, unit_key(Path(src.url).name), ("url", src.url), src.url,
                       src.licence)],
            {"url": src.url, "licence": src.licence})
  if src.kind == "tfds":
    return [InputFile(src.name, "00000", ("tfds", src.tfds_name, dl.cache_dir),
                 f"tfds://{src.tfds_name}", src.licence)], {"tfds": src.tfds_name,
                                                             "licence": src.licence}
  raise ValueError(f"source {src.name}: unknown kind {src.kind!r}")


def local_units(path: Path, licence: str) -> tuple[list[InputFile], dict]:
  if not path.exists():
    raise FileNotFoundError(f"--path {path} does not exist: pass a file or folder of "
                            f"*.txt, *.jsonl(.gz) or *.parquet")
  exts = (".txt", ".txt.gz", ".txt.xz", ".jsonl", ".jsonl.gz", ".json", ".parquet")
  files = [path] if path.is_file() else sorted(
      p for p in path.rglob("*") if p.is_file() and p.name.endswith(exts)
      and not p.name.startswith("."))
  if not files:
    raise FileNotFoundError(f"--path {path}: no *.txt, *.jsonl(.gz) or *.parquet files")
  units = [InputFile("local", unit_key(f.name if f == path else f.relative_to(path).as_posix()),
                 ("local", str(f)), f"file://{f.resolve()}", licence) for f in files]
  return units, {"path": str(path.resolve()), "files": [str(f) for f in files], "licence": licence}


# ----------------------------------------------------------------------------- tfds

def _tfds_rows(name: str, data_dir: str | None) -> Iterator[dict]:
  import tensorflow_datasets as tfds
  import tensorflow_datasets.text.wikipedia  # noqa: F401  registers the wikipedia builder
  b = tfds.builder(name, data_dir=data_dir)
  if not b.is_prepared():
    try:
      b.download_and_prepare(file_format="array_record")
    except Exception as e:   # no network, or missing apache-beam / importlib_resources
      raise SourceUnavailable(_offline_hint(
          "tfds_wikipedia", f"tensorflow-datasets cannot prepare {name}: {type(e).__name__}: {e}; "
          "`--source wikipedia` reads the same dump from the Hub")) from e
  for i, ex in enumerate(b.as_data_source(split="train")):
    t = ex["text"]
    yield {"id": str(i), "text": t.decode("utf-8") if isinstance(t, bytes) else t,
           "title": (ex.get("title") or b"").decode("utf-8") if isinstance(ex.get("title"), bytes)
           else ex.get("title")}


# ----------------------------------------------------------------------------- main

def copy_sample(out: Path) -> dict:
  """The embedded corpus, copied byte for byte (planted defects included)."""
  stats = shards.Stats()
  dest = out / "sample"
  files = []
  for p in shards.list_shards(SAMPLE_DIR):
    target = dest / p.name
    data = p.read_bytes()
    if not (target.exists() and target.read_bytes() == data):
      tmp = target.with_name(target.name + ".tmp")
      dest.mkdir(parents=True, exist_ok=True)
      tmp.write_bytes(data)
      os.replace(tmp, target)
    raw = gzip.decompress(data) if p.name.endswith(".gz") else data
    n = sum(1 for line in raw.split(b"\n") if line.strip())
    stats.docs_in += n
    stats.docs_out += n
    stats.bytes_in += len(raw)
    stats.bytes_out += len(raw)
    files.append(p.name)
  return {**stats.to_dict(), "provenance": {"path": "data_pipeline/sample (embedded)",
                                            "files": files, "licence": "project licence"}}


def run_source(units: list[InputFile], out: Path, dl, runner) -> dict:
  """Processes the units not yet marked done; returns the merged stats of all units.
  `dl` and `runner` are the `download` and `runner` sections of configs/pipeline.py."""
  tasks = [shards.Unit(u.key, _unit_marker(out, u), (
      u, out, dl.text_field, dl.txt_mode, dl.shard_docs, runner.max_line_bytes)) for u in units]

  def budget(t: shards.Unit, done: dict) -> shards.Unit | None:
    """--max-docs is a cap per source: each unit gets what the ones before it left."""
    remaining = dl.max_docs - sum(d["docs"]["out"] for d in done.values())
    if remaining <= 0:
      return None
    return t._replace(args=(dataclasses.replace(t.args[0], max_docs=remaining), *t.args[1:]))

  ran = shards.run_units(
      tasks, process_unit, workers=runner.workers, start_method=runner.start_method,
      desc=f"download {units[0].source}", unit="file",
      valid=lambda t, d: d.get("origin") == t.args[0].origin,   # another commit/URL: redo
      adjust=budget if dl.max_docs is not None else None)   # a global cap needs units in order
  total = shards.Stats()
  for k in sorted(ran.results):
    total.merge(shards.Stats.from_dict(ran.results[k]))
  return {**total.to_dict(), "units": len(units), "units_done": len(ran.results)}


def _flags(p: argparse.ArgumentParser, cfg) -> None:
  dl = cfg.download
  p.add_argument("--source", required=True,
                 help=f"one of {', '.join(SOURCES)}, all, local, sample (comma-separated ok)")
  p.add_argument("--path", help="--source local: a file or folder of txt, jsonl(.gz), parquet")
  p.add_argument("--licence", default=None,
                 help=f"--source local: licence (default {dl.licence!r})")
  p.add_argument("--txt-mode", choices=("paragraph", "line", "file"), default=None,
                 help=f"plain text: one document per blank-line paragraph, line or file "
                      f"(default {dl.txt_mode})")
  p.add_argument("--max-docs", type=int, default=None, help="stop each source after N documents")
  p.add_argument("--shard-docs", type=int, default=None,
                 help=f"documents per output shard (default {dl.shard_docs})")
  p.add_argument("--revision", default=None, help="Hub revision (default: each source's)")
  p.add_argument("--cache-dir", default=None, help="Hub cache (default: HF_HUB_CACHE)")
  p.add_argument("--text-field", default=None, help=f"default {dl.text_field!r}")


def _source_names(spec: str) -> list[str]:
  return [s for part in spec.split(",") for s in (ALL if part == "all" else (part,))]


def _check(args) -> str | None:
  """Usage errors, before any work."""
  names = _source_names(args.source)
  unknown = [n for n in names if n not in SOURCES and n not in ("local", "sample")]
  if unknown:
    return f"unknown source(s) {unknown}: choose from {', '.join(SOURCES)}, all, local, sample"
  if "local" in names and not args.path:
    return "--source local needs --path FILE_OR_DIR"
  return None


def main(argv: list[str] | None = None) -> int:
  args, cfg = shards.parse_cli(argv, "download", __doc__, "download", _flags,
                               common=("output", "workers", "max_line_bytes"), check=_check)
  dl = cfg.download
  out = Path(args.output)
  names = _source_names(args.source)
  out.mkdir(parents=True, exist_ok=True)
  stats_path = out / "stats.json"
  report = json.loads(stats_path.read_text()) if stats_path.exists() else {}
  report.setdefault("phase", "download")
  report.setdefault("sources", {})
  failed = []
  for name in names:
    try:
      if name == "sample":
        report["sources"]["sample"] = copy_sample(out)
        continue
      if name == "local":
        units, prov = local_units(Path(args.path), dl.licence)
      else:
        units, prov = units_for(SOURCES[name], out, dl)
      report["sources"][name] = {**run_source(units, out, dl, cfg.runner), "provenance": prov}
    except SourceUnavailable as e:
      print(str(e), file=sys.stderr)
      failed.append(name)
    except Exception as e:   # network loss mid-download: one line, rerun resumes
      if name in SOURCES and _is_offline_error(e):
        print(_offline_hint(name, f"{type(e).__name__}: {e}"), file=sys.stderr)
        failed.append(name)
      else:
        raise
    shards.write_json(stats_path, report)
  total = shards.Stats()
  for s in report["sources"].values():
    total.merge(shards.Stats.from_dict(s))
  report.update(total.to_dict())
  report["failed"] = failed
  shards.write_json(stats_path, report)
  d = report["docs"]
  print(f"download: {d['out']} docs in {len(report['sources'])} source(s) under {out}"
        + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
