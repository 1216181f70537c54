"""`swahili100 ladder`: the fit recovers known parameters, and a tiny grid runs end to end."""

import json
import math

import numpy as np
import pytest

from swahili100 import config_lib, ladder, report

import test_report
from tests.conftest import REPO

TRUE = {"E": 0.9, "A": 40.0, "alpha": 0.35, "B": 60.0, "beta": 0.3}


def law(n, d, p=TRUE):
  return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def test_fit_recovers_known_parameters_within_its_intervals():
  rng = np.random.default_rng(0)
  runs = []
  for c in (1e13, 3e13, 1e14, 3e14):     # an isoFLOP grid with C = 6ND
    for n in np.geomspace(2e5, 2e7, 5):
      d = c / (6 * n)
      runs.append({"params_non_embedding": n, "tokens": d,
                   "bpb": law(n, d) * math.exp(rng.normal(0, 0.003))})   # 0.3 % seed noise
  held_n, held_d = 5e7, 1e14 * 10 / (6 * 5e7)                          # 10x the largest C
  f = ladder.fit(runs, [(held_n, held_d)], n_boot=200)
  p = f["params"]
  for k in ("E", "alpha", "beta"):
    lo, hi = p[k]["interval"]
    assert lo <= TRUE[k] <= hi, (k, p[k])
    assert p[k]["value"] == pytest.approx(TRUE[k], rel=0.25)
  pred = f["predictions"][0]
  assert pred["interval"][0] <= law(held_n, held_d) <= pred["interval"][1]
  assert pred["interval"][1] - pred["interval"][0] < 0.1
  # the optimal-allocation exponents follow from alpha and beta
  assert p["a"]["value"] == pytest.approx(p["beta"]["value"] / (p["alpha"]["value"] +
                                                                p["beta"]["value"]))


def test_family_rule_gives_every_shape_from_depth():
  for depth in (1, 3, 6):
    m = config_lib.load(f"{REPO}/configs/ladder.py:{depth}").model
    assert (m.num_layers, m.d_model, m.num_heads, m.num_kv_heads, m.mlp_dim) == (
        depth, 64 * depth, 2 * depth, depth, 256 * depth)
    assert m.num_heads * m.head_dim == m.d_model


def test_tiny_ladder_trains_fits_holds_out_and_refits(tiny_records, tmp_path, capsys):
  records, tok, vocab = tiny_records
  extra = [f"--config.data.records_dir={records}", f"--config.data.tokenizer={tok}",
           "--config.data.seq_len=32", "--config.data.batch_size=2", "--config.data.prefetch=0",
           f"--config.model.vocab_size={vocab}", "--config.train.log_every=4",
           "--config.ladder.min_steps=8"]
  wd = str(tmp_path / "ladder")
  argv = ["--config", f"{REPO}/configs/ladder.py", "--workdir", wd, "--sizes", "1,2",
          "--flops", "1.7e9,3.4e9,6.8e9", "--holdout", "2:1.36e10", "--parallel", "2",
          "--bootstrap", "50", "--predict", "3:1e5", "--budget", "1e10", "--", *extra]
  assert ladder.main(argv) == 0
  out = json.loads((tmp_path / "ladder" / "ladder.json").read_text())
  assert len(out["runs"]) == 7 and sum(r["holdout"] for r in out["runs"]) == 1
  for r in out["runs"]:     # every run exhausted its budget within one step's FLOPs
    assert abs(r["flops"] - r["budget"]) <= r["flops_per_token"] * 2 * 32
    cfg = json.loads((tmp_path / "ladder" / r["name"] / "config.json").read_text())
    assert cfg["runtime"]["params_non_embedding"] == r["params_non_embedding"]
    assert cfg["runtime"]["flops_per_token"] == r["flops_per_token"]
  assert all(set(out["fit"][k]) == {"value", "interval"} for k in ("E", "A", "alpha", "B",
                                                                  "beta", "a", "b"))
  h = out["holdout"]
  assert h["measured_bpb"] == [r for r in out["runs"] if r["holdout"]][0]["bpb"]
  assert h["interval"][0] < h["predicted_bpb"] < h["interval"][1]
  # the config's own predictions (configs/small.py's run, its 30-minute budget), then the flags'
  assert [q.get("spec") or q["budget"] for q in out["predict"]] == ["4:4.3e6", "3:1e5", 2.2e14,
                                                                    1e10]
  spec, budget = out["predict"][1], out["predict"][3]
  assert spec["D"] == 1e5 and spec["interval"][0] < spec["predicted_bpb"] < spec["interval"][1]
  assert budget["optimal"]["depth"] >= 1
  assert {p.rsplit("/", 1)[1] for p in out["plots"]} == {"loss_vs_tokens.png", "isoflop.png",
                                                         "frontier.png"}
  # a second call trains nothing; --fit-only refits what is there
  capsys.readouterr()
  assert ladder.main(argv) == 0
  assert capsys.readouterr().out.count("skip (done)") == 7
  assert ladder.main(["--fit-only", wd, "--bootstrap", "50"]) == 0
  again = json.loads((tmp_path / "ladder" / "ladder.json").read_text())
  assert again["fit"]["theta"] == out["fit"]["theta"]
  # `swahili100 report W` renders the ladder folder: fit, held-out run, plots, in a browser
  assert report.main([wd, "--output", str(tmp_path / "page")]) == 0
  md = (tmp_path / "page" / "report.md").read_text()
  assert "# Swahili-100 scaling ladder" in md and "| alpha |" in md and "## Held-out run" in md
  assert report.fmt(h["measured_bpb"]) in md and md.count("](") == 3
  if test_report._chromium():
    widths, pixels = test_report.in_chromium(tmp_path / "page" / "report.html", tmp_path)
    assert len(widths) == 3 and all(w > 100 for w in widths), widths
    assert (pixels.min(axis=-1) < 200).mean() > 0.02


def test_grid_too_small_to_fit_is_refused(tmp_path, capsys):
  assert ladder.main(["--config", f"{REPO}/configs/ladder.py", "--workdir", str(tmp_path),
                      "--sizes", "1", "--flops", "1e13", "--dry-run"]) == 2
  assert "needs at least 6 runs" in capsys.readouterr().err
