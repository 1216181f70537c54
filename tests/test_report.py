"""`swahili100 report`: plots, tables, provenance from a synthetic study; the page in Chromium."""

import base64
import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from swahili100 import report

SHA = "ab" * 32
PNGS = ("curves.png", "dynamics.png", "funnel.png", "drops.png")


def _run(folder, records_dir, lr, steps=60):
  """A run folder as `swahili100 train` leaves it: config.json and logs/training.jsonl."""
  (folder / "logs").mkdir(parents=True)
  rows = []
  for step in range(5, steps + 1, 5):
    loss = 7.5 * math.exp(-step * lr * 10) + 1.0 + 0.05 * math.sin(step)
    rows.append({"step": step, "loss": loss,
                 "lr": lr * min(1.0, step / 20), "grad_norm": 1.0 + 0.3 * math.cos(step / 7),
                 "tokens_per_s": 20000.0 + 500 * math.sin(step), "mfu": 0.3,
                 "tokens_seen": step * 2048, "compile_s": 3.0})
    if step % 20 == 0:
      rows.append({"step": step, "eval_loss": rows[-1]["loss"] + 0.1,
                   "eval_bpb": (rows[-1]["loss"] + 0.1) / 3.2, "eval_tokens": 4000})
  (folder / "logs" / "training.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  config = {"model": {"d_model": 32, "num_layers": 2}, "optim": {"lr": lr},
            "data": {"records_dir": str(records_dir), "batch_size": 16, "seq_len": 128}}
  (folder / "config.json").write_text(json.dumps(config))
  return rows


def _pipeline(root):
  phases = [("raw", 500, 500, {}, {}), ("cleaned", 500, 470, {"too_short": 20, "invalid_utf8": 10},
                                         {"too_short": 900, "invalid_utf8": 3000}),
            ("deduped", 470, 430, {"exact_duplicate": 25, "near_duplicate": 15},
             {"exact_duplicate": 40000, "near_duplicate": 21000}),
            ("filtered", 430, 400, {"lang": 30}, {"lang": 26000}), ("records", 400, 400, {}, {})]
  nbytes = 500_000
  for name, d_in, d_out, drops, byte_drops in phases:
    (root / name).mkdir(parents=True)
    b_out = nbytes - sum(byte_drops.values())
    stats = {"docs": {"in": d_in, "out": d_out, "dropped": drops},
             "bytes": {"in": nbytes, "out": b_out, "dropped": byte_drops}, "phase": name}
    nbytes = b_out
    if name == "raw":
      stats["sources"] = {
          "wikipedia": {"docs": {"in": 300, "out": 300}, "bytes": {"out": 300_000},
                        "provenance": {"repo": "wikimedia/wikipedia", "revision": "abc123",
                                       "files": ["a.parquet"], "licence": "CC BY-SA 4.0"}},
          "sample": {"docs": {"in": 200, "out": 200}, "bytes": {"out": 200_000},
                     "provenance": {"path": "data_pipeline/sample (embedded)",
                                    "files": ["s0.jsonl", "s1.jsonl"],
                                    "licence": "project licence"}}}
    if name == "records":
      stats["splits"] = {"train": {"documents": 380, "tokens": 90_000, "bytes": 400_000},
                         "validation": {"documents": 20, "tokens": 4_500, "bytes": 20_000}}
      (root / name / "manifest.json").write_text(json.dumps(
          {"tokenizer_sha256": SHA, "tokenizer_file": "/t/swahili_bpe.json", "vocab_size": 2048}))
    (root / name / "stats.json").write_text(json.dumps(stats))


@pytest.fixture
def study(tmp_path):
  pipeline = tmp_path / "data"
  _pipeline(pipeline)
  _run(tmp_path / "runs" / "lr1e-3", pipeline / "records", 1e-3)
  _run(tmp_path / "runs" / "lr3e-3", pipeline / "records", 3e-3, steps=40)
  task = {"acc": 0.55, "acc_stderr": 0.05, "acc_norm": 0.53, "acc_norm_stderr": 0.049, "n": 100,
          "chance": 0.5, "majority": 0.55, "data": "shared/data/xcopa-sw/val.jsonl"}
  (tmp_path / "runs" / "lr1e-3" / "eval.json").write_text(json.dumps(
      {"checkpoint": "runs/lr1e-3/checkpoints/60", "step": 60,
       "tasks": {"xcopa": task, "sib200": {**task, "acc": 0.31, "chance": 0.1429, "n": 204},
                 "bpb": {"bpb": 1.42, "loss": 3.1, "tokens": 12345, "bytes": 54321,
                         "data": "records:validation"}}}))
  flat = tmp_path / "old_eval.json"
  flat.write_text(json.dumps({"checkpoint": "runs/lr3e-3", "loss": 2.9, "bpb": 1.377,
                              "tokens": 3391, "xcopa_accuracy": 0.57, "xcopa_items": 100}))
  return tmp_path, flat


def _render(study_paths):
  root, flat = study_paths
  out = root / "report"
  rc = report.main([str(root / "runs" / "lr1e-3"), str(root / "runs" / "lr3e-3"),
                    "--output", str(out), "--eval", str(flat)])
  assert rc == 0
  return out


def test_report_writes_plots_from_the_data(study):
  out = _render(study)
  for name in PNGS:
    assert (out / name).stat().st_size > 5000, name
  from matplotlib import image
  pixels = image.imread(out / "curves.png")[..., :3]
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # lines, text and legend drawn
  page = (out / "report.html").read_text()
  embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
  assert sorted(base64.b64decode(e) for e in embedded) == sorted(
      (out / n).read_bytes() for n in PNGS)
  assert "<script" not in page and "http" not in page.replace("http-equiv", "")


def test_markdown_carries_runs_evaluation_data_and_provenance(study):
  md = (_render(study) / "report.md").read_text()
  for name in PNGS:
    assert f"]({name})" in md
  assert "| lr1e-3 | 60 | 122,880 |" in md and "| lr3e-3 | 40 | 81,920 |" in md
  assert "| xcopa | acc | 0.55 | 0.05 | 100 | 0.5 | 0.55 | shared/data/xcopa-sw/val.jsonl |" in md
  assert "| xcopa | acc_norm | 0.53 | 0.049 | 100 | 0.5 | 0.55 |" in md
  assert "| sib200 | acc | 0.31 | 0.05 | 204 | 0.1429 | 0.55 |" in md
  assert "| bpb | bpb | 1.42 |" in md and "| bpb | bytes | 54,321 |" in md
  assert "| xcopa | acc | 0.57 |  | 100 |" in md and "| bpb | bpb | 1.377 |" in md  # flat file
  assert "| cleaned | too_short | 20 | 900 |" in md and "| filtered | lang | 30 | 26,000 |" in md
  assert "| deduped |" in md and "| 470 | 430 | 40 |" in md
  assert "| wikipedia | CC BY-SA 4.0 | wikimedia/wikipedia@abc123 | 1 | 300 | 300,000 |" in md
  assert SHA in md and "| train | 380 | 90,000 | 400,000 |" in md
  assert "optim: lr=0.003" in md  # the config, compactly


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
  assert report.main([str(tmp_path), "--output", str(tmp_path / "out")]) == 2
  assert "is not a run folder" in capsys.readouterr().err


def _chromium():
  for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
    if shutil.which(name):
      return shutil.which(name)
  return None


def in_chromium(page, tmp_path):
  """(decoded width of each image, screenshot pixels) of `page` in headless Chromium."""
  # A copy of the page with a probe that stamps each image's decoded width on it; the report
  # itself carries no script.
  probe = page.parent / "probe.html"
  probe.write_text(page.read_text().replace(
      "</body>", "<script>window.addEventListener('load', () => { for (const i of "
      "document.images) i.setAttribute('data-decoded', i.complete ? i.naturalWidth : 0); "
      "});</script></body>"))
  flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
           "--virtual-time-budget=10000"]
  shot = tmp_path / "page.png"
  subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
                 check=True, capture_output=True, timeout=120)
  dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], check=True, capture_output=True,
                       text=True, timeout=120).stdout
  widths = [int(w) for w in re.findall(r'data-decoded="(\d+)"', dom)]
  return widths, np.asarray(Image.open(shot).convert("RGB")).astype(int)


@pytest.mark.skipif(_chromium() is None,
                    reason="no chromium binary (apt-get install -y chromium)")
def test_page_renders_in_headless_chromium(study, tmp_path):
  out = _render(study)
  widths, pixels = in_chromium(out / "report.html", tmp_path)
  assert len(widths) == len(PNGS) and all(w > 100 for w in widths), widths
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
  assert (pixels.min(axis=-1) < 200).mean() > 0.02  # text, tables and plots, not a blank page
  blue = np.abs(pixels - [31, 119, 180]).sum(axis=-1) < 30  # tab:blue, the first run's line
  assert blue.sum() > 500


def test_train_seconds_add_compilation_and_each_interval_at_its_throughput():
  train = [{"step": 10, "tokens_seen": 1000, "tokens_per_s": 100.0, "compile_s": 5.0, "loss": 1},
           {"step": 20, "tokens_seen": 2000, "tokens_per_s": 50.0, "loss": 1}]
  np.testing.assert_allclose(report.train_seconds(train, [10, 15, 20]), [15.0, 25.0, 35.0])
  assert np.isnan(report.train_seconds([{"step": 1, "loss": 1}], [1])).all()
