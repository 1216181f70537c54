"""Evaluation data: readers for the files in their published formats, `--data` specs, the Hub.

    specs = parse_specs(["xcopa=../shared/data/xcopa-sw/val.jsonl", "sib200=hub"])
    rows = read_rows(path, "tsv")            # list of dicts, one per item, in file order

A spec value is a local path or `hub`: the public TEST split fetched with `hf_hub_download` from
the dataset repository a task names (see tasks.py), cached by huggingface_hub. The Hub endpoint
is `HF_ENDPOINT` read at call time (tests point it at a local server).
"""

import csv
import gzip
import json
import os
import sys

from swahili100 import fs
from swahili100.evals import EvalDataError

HUB = "hub"


def parse_specs(values, flag: str = "--data") -> dict[str, str]:
  """{task: path or 'hub'} from ['task=value', ...] or one comma-separated 'a=x,b=y' string."""
  if isinstance(values, str):
    values = [v for v in values.split(",") if v.strip()]
  specs = {}
  for value in values or ():
    task, sep, path = value.partition("=")
    if not sep or not task.strip() or not path.strip():
      raise EvalDataError(f"{flag} {value!r}: expected TASK=PATH (e.g. xcopa=val.jsonl) or "
                          "TASK=hub")
    specs[task.strip()] = path.strip()
  return specs


def hub_file(repo: str, filename: str, revision: str = "main", cache_dir: str | None = None):
  """Local path of `filename` in the Hub dataset `repo` (downloaded once, then cached)."""
  from huggingface_hub import hf_hub_download  # noqa: PLC0415 (only `hub` specs need it)
  from huggingface_hub.errors import EntryNotFoundError  # noqa: PLC0415
  endpoint = os.environ.get("HF_ENDPOINT") or None
  try:
    return hf_hub_download(repo, filename, repo_type="dataset", revision=revision,
                           cache_dir=cache_dir, endpoint=endpoint)
  except (OSError, EntryNotFoundError, ValueError) as e:  # HTTP errors are OSErrors
    raise EvalDataError(f"cannot fetch {filename} of the Hub dataset {repo}@{revision} "
                        f"({type(e).__name__}: {str(e).splitlines()[0]}); check the network "
                        "(HF_ENDPOINT) or pass a local file instead of `hub`") from None


def _open_text(path):
  return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(
      path, encoding="utf-8", newline="")


def read_rows(path: str, fmt: str) -> list[dict]:
  """Rows of a jsonl(.gz), tsv (header line, csv quoting as pandas reads it) or parquet file
  (a local path or a URL such as gs://...)."""
  if not fs.exists(path):
    raise EvalDataError(f"{path}: no such file")
  path = fs.local_file(path)
  try:
    if fmt == "parquet":
      import pyarrow.parquet as pq  # noqa: PLC0415 (only Hub parquet files need it)
      return pq.read_table(path).to_pylist()
    with _open_text(path) as f:
      if fmt == "jsonl":
        return [json.loads(line) for line in f if line.strip()]
      if fmt == "tsv":
        csv.field_size_limit(sys.maxsize)  # news articles are longer than csv's 128 KiB default
        return list(csv.DictReader(f, delimiter="\t"))
  except (json.JSONDecodeError, csv.Error, UnicodeDecodeError, OSError) as e:
    raise EvalDataError(f"{path}: cannot read it as {fmt} ({e})") from None
  except Exception as e:  # noqa: BLE001 (pyarrow's errors share no base class worth naming)
    raise EvalDataError(f"{path}: cannot read it as {fmt} ({type(e).__name__}: {e})") from None
  raise ValueError(f"unknown format {fmt!r}")


def require_columns(rows: list[dict], columns, path: str, fmt: str) -> None:
  """Raises naming the file and the missing columns when rows lack any of `columns`."""
  if not rows:
    raise EvalDataError(f"{path}: no items")
  missing = [c for c in columns if c not in rows[0]]
  if missing:
    raise EvalDataError(f"{path}: {fmt} without the column(s) {missing} (has {list(rows[0])}); "
                        "pass the file in its published format")


def documents(path: str) -> list[str]:
  """The `text` of every line of a JSONL(.gz) file of documents `{"text": ...}`."""
  rows = read_rows(path, "jsonl")
  bad = next((i for i, r in enumerate(rows) if not isinstance(r.get("text"), str)), None)
  if bad is not None:
    raise EvalDataError(f"{path}: line {bad + 1} has no string `text` field; bpb files hold one "
                        'JSON document {"text": ...} per line')
  return [r["text"] for r in rows]
