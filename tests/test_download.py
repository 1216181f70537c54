"""Phase 1 (download): only the network boundary is replaced; parsing and writing run for real."""

import gzip
import http.server
import json
import lzma
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline import download, shards

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROWS_A = [{"id": "a0", "text": "Mvua kubwa ilinyesha jana jioni mjini Dodoma.", "url": "https://a/0"},
          {"id": "a1", "text": "", "url": "https://a/1"},   # empty: dropped as empty_text
          {"id": "a2", "text": "Wakulima wa ng'ombe walivuka mto.", "url": "https://a/2"},
          {"id": "a3", "text": "Timu ya taifa ilishinda mechi ya jana.", "url": "https://a/3"}]
ROWS_B = [{"id": f"b{i}", "text": f"Habari ya {i}: shule mpya imefunguliwa kijijini.",
           "url": f"https://b/{i}"} for i in range(3)]


def _docs(folder: Path) -> list[dict]:
  return [d for p in shards.list_shards(folder) for d in shards.read_shard(p, shards.Stats())]


def _hub_cache(root: Path, repo: str, files: dict[str, list[dict]]) -> Path:
  """A real Hub cache layout (refs/main -> snapshots/<commit>/<file>) holding parquet files."""
  base = root / ("datasets--" + repo.replace("/", "--"))
  (base / "refs").mkdir(parents=True)
  (base / "refs" / "main").write_text(COMMIT)
  for name, rows in files.items():
    f = base / "snapshots" / COMMIT / name
    f.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), f)
  return root


@pytest.fixture
def offline(monkeypatch):
  from huggingface_hub import constants
  monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_sample_is_copied_byte_for_byte(tmp_path):
  assert download.main(["--source", "sample", "--output", str(tmp_path)]) == 0
  for src in shards.list_shards(download.SAMPLE_DIR):
    assert (tmp_path / "sample" / src.name).read_bytes() == src.read_bytes()
  st = json.loads((tmp_path / "stats.json").read_text())
  lines = sum(1 for p in shards.list_shards(download.SAMPLE_DIR)
              for line in (gzip.decompress(p.read_bytes()) if p.name.endswith(".gz")
                           else p.read_bytes()).split(b"\n") if line.strip())
  assert st["sources"]["sample"]["docs"]["out"] == lines == st["docs"]["in"]


def test_offline_fails_fast_with_one_line(tmp_path):
  """The real switch, HF_HUB_OFFLINE=1 in the environment, through the console entry point."""
  import os
  import subprocess
  import sys
  import time
  env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
  t = time.time()
  r = subprocess.run([sys.executable, "-m", "swahili100.cli", "download", "--source",
                      "fineweb2,wikipedia", "--output", str(tmp_path / "o")],
                     cwd=download.SAMPLE_DIR.parents[1], env=env, capture_output=True, text=True)
  assert r.returncode == 1 and time.time() - t < 30
  err = [l for l in r.stderr.splitlines() if "unavailable" in l]
  assert len(err) == 2
  assert "'fineweb2'" in err[0] and "'wikipedia'" in err[1]
  assert all("--source sample" in l and "--source local --path" in l for l in err)
  assert json.loads((tmp_path / "o" / "stats.json").read_text())["failed"] == ["fineweb2",
                                                                               "wikipedia"]


def test_unreachable_url_fails_fast(tmp_path, monkeypatch, capsys):
  src = download.dataclasses.replace(download.SOURCES["cc100"], url="http://127.0.0.1:9/sw.txt.xz")
  monkeypatch.setitem(download.SOURCES, "cc100", src)
  assert download.main(["--source", "cc100", "--output", str(tmp_path)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert any(l.startswith("download: source 'cc100' unavailable") and "--source sample" in l
             for l in err)


def test_hub_cache_offline_to_shards_with_provenance(tmp_path, offline):
  cache = _hub_cache(tmp_path / "hub", "HuggingFaceFW/fineweb-2", {
      "data/swh_Latn/train/000_00000.parquet": ROWS_A,
      "data/swh_Latn/train/000_00001.parquet": ROWS_B,
      "data/eng_Latn/train/000_00000.parquet": [{"id": "x", "text": "English, not fetched."}]})
  out = tmp_path / "raw"
  argv = ["--source", "fineweb2", "--output", str(out), "--cache-dir", str(cache),
          "--shard-docs", "2"]
  assert download.main(argv) == 0
  names = sorted(p.name for p in (out / "fineweb2").glob("*.jsonl.gz"))
  unit = "data_swh_Latn_train_000_0000"
  assert names == [f"{unit}0-00000.jsonl.gz", f"{unit}0-00001.jsonl.gz", f"{unit}1-00000.jsonl.gz",
                   f"{unit}1-00001.jsonl.gz"]
  docs = _docs(out / "fineweb2")
  assert [d["id"] for d in docs] == ["fineweb2:a0", "fineweb2:a2", "fineweb2:a3", "fineweb2:b0",
                                     "fineweb2:b1", "fineweb2:b2"]
  assert docs[1]["text"] == "Wakulima wa ng'ombe walivuka mto." and docs[1]["url"] == "https://a/2"
  assert docs[0]["origin"] == (f"hf://datasets/HuggingFaceFW/fineweb-2@{COMMIT}/"
                               "data/swh_Latn/train/000_00000.parquet")
  assert all(d["source"] == "fineweb2" and d["licence"].startswith("ODC-By") for d in docs)
  st = json.loads((out / "stats.json").read_text())
  s = st["sources"]["fineweb2"]
  assert s["provenance"]["revision"] == COMMIT and len(s["provenance"]["files"]) == 2
  assert s["docs"]["in"] == 7 and s["docs"]["out"] == 6 and s["docs"]["dropped"] == {"empty_text": 1}
  removed = _docs_raw(out / "removed" / "fineweb2" / f"{unit}0.jsonl.gz")
  assert removed[0]["reason"] == "empty_text" and removed[0]["doc"]["id"] == "a1"
  # rerun: both units are marked done and skipped; outputs unchanged
  before = {p: p.read_bytes() for p in (out / "fineweb2").iterdir()}
  (out / "fineweb2" / f"{unit}1.done").unlink()   # as if killed before unit 1 finished
  (out / "fineweb2" / f"{unit}1-00000.jsonl.gz").unlink()
  assert download.main(argv) == 0
  assert {p: p.read_bytes() for p in (out / "fineweb2").iterdir()} == before
  # a new commit on the branch: the units are redone (markers hold the origin they were made from)
  base = cache / "datasets--HuggingFaceFW--fineweb-2"
  new = "f" * 40
  (base / "snapshots" / COMMIT).rename(base / "snapshots" / new)
  (base / "refs" / "main").write_text(new)
  pq.write_table(pa.Table.from_pylist(ROWS_B[:1]),
                 base / "snapshots" / new / "data/swh_Latn/train/000_00001.parquet")
  assert download.main(argv) == 0
  assert [d["id"] for d in _docs(out / "fineweb2")][-2:] == ["fineweb2:a3", "fineweb2:b0"]
  assert new in json.loads((out / "stats.json").read_text())["sources"]["fineweb2"]["provenance"][
      "revision"]
  out2 = tmp_path / "raw2"   # --workers 2 (one process per file): the same bytes
  assert download.main([*argv[:3], str(out2), *argv[4:], "--workers", "2"]) == 0
  files = lambda o: {p.name: p.read_bytes() for p in (o / "fineweb2").iterdir()}  # noqa: E731
  assert files(out2) == files(out)


def _docs_raw(path: Path) -> list[dict]:
  return [json.loads(l) for l in gzip.decompress(path.read_bytes()).splitlines()]


def test_hub_online_path_with_patched_boundary(tmp_path, monkeypatch):
  """Online: HfApi listing and hf_hub_download are the boundary; they return local files."""
  import huggingface_hub
  files = {"20231101.sw/train-00000-of-00001.parquet": ROWS_B, "20231101.en/x.parquet": ROWS_A,
           "README.md": None}
  local = {}
  for name, rows in files.items():
    f = tmp_path / "remote" / name
    f.parent.mkdir(parents=True, exist_ok=True)
    if rows is None:
      f.write_text("# card")
    else:
      pq.write_table(pa.Table.from_pylist(rows), f)
    local[name] = f
  calls = []

  class Info:
    sha = COMMIT

  monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", lambda self, repo, **kw: Info())
  monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo, **kw: list(files))

  def fake_download(repo, filename, **kw):
    calls.append((repo, filename, kw["revision"]))
    return str(local[filename])

  monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
  out = tmp_path / "raw"
  assert download.main(["--source", "wikipedia", "--output", str(out), "--max-docs", "2"]) == 0
  assert calls == [("wikimedia/wikipedia", "20231101.sw/train-00000-of-00001.parquet", COMMIT)]
  docs = _docs(out / "wikipedia")
  assert [d["id"] for d in docs] == ["wikipedia:b0", "wikipedia:b1"]   # --max-docs 2
  assert docs[0]["licence"] == "CC BY-SA 3.0 and GFDL"


def test_local_txt_jsonl_parquet(tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  (src / "a.txt").write_text("Aya ya kwanza ya hadithi.\nInaendelea hapa.\n\nAya ya pili.\n\n\n")
  with gzip.open(src / "b.jsonl.gz", "wt") as f:
    f.write('{"id": "j1", "text": "Habari njema kutoka Mombasa."}\n{"id": "j2", "text": \n'
            '{"id": "j3"}\n')
  pq.write_table(pa.Table.from_pylist([{"text": "Safu ya parquet."}, {"text": None}]),
                 src / "c.parquet")
  out = tmp_path / "raw"
  assert download.main(["--source", "local", "--path", str(src), "--output", str(out),
                        "--licence", "CC BY 4.0"]) == 0
  docs = _docs(out / "local")
  assert [d["text"] for d in docs] == ["Aya ya kwanza ya hadithi.\nInaendelea hapa.",
                                       "Aya ya pili.", "Habari njema kutoka Mombasa.",
                                       "Safu ya parquet."]
  assert docs[2]["id"] == "local:j1" and docs[3]["id"] == "local:c:0"
  assert all(d["licence"] == "CC BY 4.0" and d["origin"].startswith("file://") for d in docs)
  s = json.loads((out / "stats.json").read_text())["sources"]["local"]
  assert s["docs"]["dropped"] == {"empty_text": 1, "malformed_json": 1, "missing_text": 1}
  assert s["docs"]["in"] == s["docs"]["out"] + sum(s["docs"]["dropped"].values()) == 7


class _Handler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *a):
    pass


def test_url_source_downloads_and_splits_paragraphs(tmp_path, monkeypatch):
  served = tmp_path / "www"
  served.mkdir()
  (served / "sw.txt.xz").write_bytes(lzma.compress(
      "Hati ya kwanza.\nMstari wa pili.\n\nHati ya pili.\n".encode()))
  handler = lambda *a, **k: _Handler(*a, directory=str(served), **k)  # noqa: E731
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=srv.serve_forever, daemon=True).start()
  try:
    url = f"http://127.0.0.1:{srv.server_address[1]}/sw.txt.xz"
    monkeypatch.setitem(download.SOURCES, "cc100",
                        download.dataclasses.replace(download.SOURCES["cc100"], url=url))
    out = tmp_path / "raw"
    part = out / ".cache" / "cc100" / "sw.txt.xz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale partial bytes")   # server ignores Range (200): restart from zero
    assert download.main(["--source", "cc100", "--output", str(out)]) == 0
  finally:
    srv.shutdown()
  docs = _docs(out / "cc100")
  assert [d["text"] for d in docs] == ["Hati ya kwanza.\nMstari wa pili.", "Hati ya pili."]
  assert docs[0]["origin"] == url


def test_tfds_wikipedia_builder_resolves_without_tensorflow(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  import sys
  import tensorflow_datasets.text.wikipedia  # noqa: F401  what download._tfds_rows imports
  b = tfds.builder(download.SOURCES["tfds_wikipedia"].tfds_name, data_dir=str(tmp_path))
  assert b.builder_config.name == "20230601.sw" and not b.is_prepared()
  assert "tensorflow" not in sys.modules
