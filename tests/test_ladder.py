"""`swahili100 ladder`: the fit recovers known parameters, a tiny grid runs end to end, and a TPU
budget becomes N, D, bits/byte and epochs of the unique text."""

import dataclasses
import json
import math

import numpy as np
import pytest

from swahili100 import aot, config_lib, ladder, records, report
from swahili100.repetition import effective_params, effective_tokens

import test_aot
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
  # a second call trains nothing; --fit-only refits what is there (the point fit is compared:
  # fewer resamples, as the intervals were checked above)
  capsys.readouterr()
  assert ladder.main([*argv[:argv.index("--bootstrap")], "--bootstrap", "10",
                      *argv[argv.index("--bootstrap") + 2:]]) == 0
  assert capsys.readouterr().out.count("skip (done)") == 7
  assert ladder.main(["--fit-only", wd, "--bootstrap", "10"]) == 0
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


def _synthetic_ladder(tmp_path, noise=0.003):
  """A finished ladder folder without training: the quick grid's rungs of configs/ladder.py,
  each with a final whole-split evaluation drawn from TRUE's law (0.3 % noise)."""
  rng = np.random.default_rng(1)
  config = f"{REPO}/configs/ladder.py"
  rungs, _ = ladder.plan(config, [1, 2, 3], [1e12, 2.5e12, 6e12], "", [], 1)
  wd = tmp_path / "ladder"
  for r in rungs:
    bpb = law(r.params_non_embedding, r.tokens) * math.exp(rng.normal(0, noise))
    (wd / r.name / "logs").mkdir(parents=True)
    (wd / r.name / "logs" / "training.jsonl").write_text(json.dumps(
        {"step": r.steps, "eval_loss": bpb, "eval_bpb": bpb}) + "\n")
  (wd / "ladder_plan.json").write_text(json.dumps(
      {"config": config, "spec": config, "extra": [],
       "rungs": [dataclasses.asdict(r) for r in rungs]}))
  return wd


def test_tpu_budget_is_chips_times_peak_times_mfu_times_hours():
  q = ladder.tpu_budget("v5e-8:24:0.4")
  assert q["budget"] == pytest.approx(8 * 197e12 * 0.4 * 24 * 3600)
  assert q["tpu"] == {"topology": "v5e-8", "hours": 24.0, "mfu": 0.4, "device_kind": "TPU v5 lite",
                      "chips": 8, "peak_flops_per_chip": 197e12}
  assert ladder.tpu_budget("v5litepod-8:24:0.4")["budget"] == q["budget"]
  assert ladder.tpu_budget("v5p-8:1:1")["budget"] == pytest.approx(4 * 459e12 * 3600)
  # aot's table gives, without libtpu, the kinds and counts that libtpu reports in test_aot
  for topology, (kind, devices, _, _) in test_aot.EXPECTED.items():
    assert aot.chips(topology) == (kind, devices)


@pytest.mark.parametrize("spec, says", [
    ("v9-8:24:0.4", "unknown topology 'v9-8'"), ("v5e-8:24:1.5", "MFU 1.5 is not a fraction"),
    ("v5e-8:24:0", "MFU 0 is not"), ("v5e-8:0:0.4", "hours 0 must be positive"),
    ("v5e-8:24", "expected TOPOLOGY:HOURS:MFU"), ("v5e-8:a day:0.4", "expected TOPOLOGY")])
def test_tpu_budget_refuses_bad_specs(spec, says):
  with pytest.raises(ladder.LadderError) as e:
    ladder.tpu_budget(spec)
  assert f"--tpu {spec!r}" in str(e.value) and says in str(e.value)
  assert "--tpu v5e-8:24:0.4" in str(e.value)   # a correct example


def test_repeated_tokens_and_parameters_are_worth_less():
  u = 1e9
  assert effective_tokens(u, 1.0) == u and effective_tokens(u, 0.5) == u / 2
  # D' = U + U R* (1 - exp(-R / R*)), R = epochs - 1, R* = 15.4
  assert effective_tokens(u, 3.0) == pytest.approx(u * (1 + 15.4 * (1 - math.exp(-2 / 15.4))))
  worth = [effective_tokens(u, e) / (e * u) for e in (2, 4, 16, 100)]
  assert worth == sorted(worth, reverse=True) and worth[1] > 0.9 > worth[2]   # ~4 epochs cheap
  assert effective_tokens(u, 100) < u * (1 + 15.4)                  # saturates
  assert effective_params(1e8, 2e8) == 1e8 and 2e8 < effective_params(4e8, 2e8) < 4e8
  theta = ladder.fit_theta(*(np.array(x, float) for x in zip(*[
      (n, c / (6 * n), law(n, c / (6 * n))) for c in (1e13, 1e14) for n in (1e5, 1e6, 1e7)])))
  n, d = 1e6, 2e9
  assert ladder.repeated(theta, n, d, unique=d) == (n, d)           # one epoch: nothing lost
  n_eff, d_eff = ladder.repeated(theta, n, d, unique=d / 20)
  assert d_eff == effective_tokens(d / 20, 20) < d and n_eff <= n
  # a model far beyond the size the unique tokens support: its excess parameters count less
  assert ladder.unique_params(theta, d / 20) < 1e8
  assert ladder.repeated(theta, 1e8, d, unique=d / 20)[0] < 1e8


def test_fit_only_plans_a_tpu_budget_under_scarce_data(tmp_path, capsys):
  wd = _synthetic_ladder(tmp_path)
  base = ["--fit-only", str(wd), "--bootstrap", "20"]
  assert ladder.main([*base, "--tpu", "v5e-8:24"]) == 2
  assert "--tpu 'v5e-8:24': expected TOPOLOGY:HOURS:MFU" in capsys.readouterr().err
  # 5e8 unique tokens against the ~2e10 that the fitted law's optimum for this budget trains on
  assert ladder.main([*base, "--tpu", "v5e-8:24:0.4", "--unique-tokens", "5e8"]) == 0
  out = json.loads((wd / "ladder.json").read_text())
  q = [q for q in out["predict"] if "tpu" in q][0]
  assert q["budget"] == 8 * 197e12 * 0.4 * 24 * 3600
  assert set(q["tpu"]) >= {"topology", "hours", "mfu", "chips", "peak_flops_per_chip"}
  assert q["interval"][0] <= q["predicted_bpb"] <= q["interval"][1]
  d, best, opt = q["data"], q["data"]["data_constrained_optimal"], q["optimal"]
  assert d["unique_tokens"] == 5e8 and d["epochs"] == opt["D"] / 5e8 > 4
  assert d["effective_tokens"] == effective_tokens(5e8, d["epochs"]) < opt["D"]
  assert d["effective_params"] <= opt["N"] and d["repetition_costly"]
  assert d["predicted_bpb_repeated"] > q["predicted_bpb"]   # what repetition costs
  # Muennighoff et al.: under scarce data the best model is smaller and sees more epochs, and it
  # does better under repetition than the unconstrained optimum
  assert best["N"] < opt["N"] and best["epochs"] > d["epochs"]
  assert best["predicted_bpb"] < d["predicted_bpb_repeated"]
  assert best["interval"][0] <= best["predicted_bpb"] <= best["interval"][1]
  # the config's own 2.2e14 budget gets the same treatment; one summary line per prediction
  assert all("data" in q for q in out["predict"] if "budget" in q)
  lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("predict")]
  assert len(lines) == len(out["predict"]) and "v5e-8 for 24 h at MFU 0.4" in lines[-1]
  assert f"{d['epochs']:.3g} epochs" in lines[-1] and f"depth {best['depth']}" in lines[-1]


def test_unique_tokens_come_from_the_records_manifest(tmp_path):
  (tmp_path / "train-00000-of-00001.arrayrecord").write_bytes(b"")
  records.write_manifest(str(tmp_path), records.Manifest(
      dtype="uint16", tokenizer_file="tok.json", tokenizer_sha256="0", vocab_size=512,
      special_tokens={}, eos_id=0, pad_id=1, splits={"train": records.SplitInfo(
          shards=["train-00000-of-00001.arrayrecord"], documents=3, tokens=12345, bytes=60000)}))
  assert ladder.unique_tokens(None, str(tmp_path)) == 12345
  assert ladder.unique_tokens(6.7e8, None) == 6.7e8 and ladder.unique_tokens(None, None) is None
  bad = [(1.0, str(tmp_path), "not both"), (None, str(tmp_path / "no"), "not found"),
         (-1.0, None, "expected a positive token count")]
  for value, where, says in bad:
    with pytest.raises(ladder.LadderError, match=says):
      ladder.unique_tokens(value, where)
