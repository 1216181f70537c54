"""`swahili100 evaluate --compare`: paired bootstrap verdicts on item files with known answers."""

import json

import numpy as np
import pytest

from swahili100 import evaluate
from swahili100.evals import EvalDataError, compare


def _write(tmp_path, name, correct, task="xcopa", bpb_rows=None, records_bpb=None):
  """eval.json + eval.items.jsonl as `swahili100 evaluate` writes them."""
  folder = tmp_path / name
  folder.mkdir()
  rows = [{"task": task, "id": str(i), "scores": [0.0, 0.0], "prediction": 0, "gold": 0,
           "correct": int(c), "correct_norm": int(c), "correct_bytes": int(c)}
          for i, c in enumerate(correct)]
  figures = {task: {"acc": float(np.mean(correct)), "n": len(correct)}}
  if bpb_rows is not None:
    rows += [{"task": "bpb", "id": str(i), "nats": n, "bytes": b} for i, (n, b) in
             enumerate(bpb_rows)]
    figures["bpb"] = {"bpb": 1.0}
  if records_bpb is not None:
    figures["records"] = {"bpb": records_bpb}
  (folder / "eval.json").write_text(json.dumps({"checkpoint": name, "step": 1,
                                                "items": "eval.items.jsonl", "tasks": figures}))
  (folder / "eval.items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(folder / "eval.json")


def test_identical_files_give_a_zero_interval(tmp_path, capsys):
  correct = np.random.RandomState(0).rand(100) < 0.6
  a, b = _write(tmp_path, "a", correct), _write(tmp_path, "b", correct)
  [line] = compare.compare(compare.load_report(a), compare.load_report(b))
  assert (line["diff"], line["low"], line["high"], line["n"]) == (0.0, 0.0, 0.0, 100)
  assert evaluate.main(["--compare", a, b]) == 0
  out = capsys.readouterr().out
  assert "no significant difference on xcopa: +0.0 points, 95 % CI [0.0, 0.0] (n=100)" in out
  assert "10,000 resamples, seed 0" in out


def test_b_right_on_20_more_of_100_is_better(tmp_path):
  a_correct = np.zeros(100, bool)
  a_correct[:50] = True
  b_correct = a_correct.copy()
  b_correct[50:70] = True  # B also right on 20 items A got wrong
  a, b = _write(tmp_path, "a", a_correct), _write(tmp_path, "b", b_correct)
  [line] = compare.compare(compare.load_report(a), compare.load_report(b))
  assert line["diff"] == pytest.approx(0.20)
  assert 0 < line["low"] < 0.20 < line["high"] < 0.30
  # 20 discordant items, all for B: the bootstrap mean is 0.2 +- ~0.04
  assert line["low"] == pytest.approx(0.12, abs=0.02)
  assert line["verdict"].startswith("B better on xcopa: +20.0 points, 95 % CI [")
  [back] = compare.compare(compare.load_report(b), compare.load_report(a))
  assert back["verdict"].startswith("A better on xcopa: -20.0 points")
  assert (back["low"], back["high"]) == pytest.approx((-line["high"], -line["low"]))


def test_a_small_difference_is_not_significant(tmp_path):
  rng = np.random.RandomState(1)
  a_correct = rng.rand(100) < 0.5
  b_correct = a_correct.copy()
  b_correct[np.flatnonzero(~a_correct)[:2]] = True  # 2 more of 100
  lines = compare.compare(compare.load_report(_write(tmp_path, "a", a_correct)),
                          compare.load_report(_write(tmp_path, "b", b_correct)))
  assert lines[0]["verdict"].startswith("no significant difference on xcopa: +2.0 points")
  assert lines[0]["low"] <= 0 < lines[0]["high"]


def test_pairs_only_shared_items_and_text_bpb_and_records(tmp_path):
  a = _write(tmp_path, "a", [1, 0, 1, 1], bpb_rows=[(10.0, 10), (20.0, 10)], records_bpb=1.5)
  b = _write(tmp_path, "b", [1, 1, 1], bpb_rows=[(5.0, 10), (10.0, 10)], records_bpb=1.25)
  lines = {x["task"]: x for x in compare.compare(compare.load_report(a), compare.load_report(b))}
  assert lines["xcopa"]["n"] == 3 and lines["xcopa"]["diff"] == pytest.approx(1 / 3)
  # bits per byte: A 30 nats / 20 bytes, B 15 / 20; A - B (B lower = better) in bits
  assert lines["bpb"]["diff"] == pytest.approx(15 / 20 / np.log(2))
  assert lines["bpb"]["verdict"] == "B better on bpb: +1.0820 bits/byte, 95 % CI [0.7213, 1.4427]"
  assert lines["records"]["verdict"] == ("B lower bpb on records by 0.2500 bits/byte (no "
                                         "per-item rows: no confidence interval)")


def test_a_file_that_is_not_an_evaluation_is_named(tmp_path):
  bad = tmp_path / "x.json"
  bad.write_text("[1, 2]")
  with pytest.raises(EvalDataError, match=r"--compare .*x.json: no `tasks`"):
    compare.load_report(str(bad))
  assert compare.items_path("runs/a/eval.json") == "runs/a/eval.items.jsonl"
