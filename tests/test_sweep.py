"""`swahili100 sweep`: grid, run naming, ranking, dry run, device slots, and a real 2-run sweep."""

import csv
import json
import math
import os

import pytest
from conftest import REPO, tiny_flags

from swahili100 import host_memory, sweep


def _write_log(workdir, rows):
  os.makedirs(os.path.join(workdir, "logs"))
  with open(os.path.join(workdir, "logs", "training.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


def test_grid_expands_to_every_combination():
  grid = sweep.parse_grid(["optim.lr=1e-4,3e-4,1e-3", "data.batch_size=64,128"])
  runs = list(sweep.combinations(grid))
  assert len(runs) == 6
  assert runs[0] == {"optim.lr": "1e-4", "data.batch_size": "64"}
  assert sweep.run_name(runs[-1]) == "optim.lr=1e-3,data.batch_size=128"


def test_bad_grid_item_is_refused_with_its_shape():
  with pytest.raises(SystemExit, match="section.key=v1,v2"):
    sweep.parse_grid(["optim.lr"])


def test_table_ranks_runs_by_best_eval_loss(tmp_path):
  _write_log(tmp_path / "a", [{"step": 10, "loss": 3.0, "tokens_per_s": 100.0, "tokens_seen": 80},
                              {"step": 10, "eval_loss": 2.9, "eval_bpb": 1.5}])
  _write_log(tmp_path / "b", [{"step": 10, "loss": 2.5, "tokens_per_s": 90.0, "tokens_seen": 80},
                              {"step": 5, "eval_loss": 2.2, "eval_bpb": 1.2},
                              {"step": 10, "eval_loss": 2.4, "eval_bpb": 1.3}])
  rows = [sweep.summarize(str(tmp_path / n), {"optim.lr": lr})
          for n, lr in (("a", "1"), ("b", "2"))]
  assert rows[1]["eval_loss"] == 2.2 and rows[1]["eval_bpb"] == 1.2
  lines = sweep.table(rows, ["optim.lr"]).splitlines()
  assert lines[0] == ("| run | optim.lr | steps | tokens_seen | final_loss | eval_loss | eval_bpb "
                      "| tokens_per_s |")
  assert lines[2] == "| b | 2 | 10 | 80 | 2.5 | 2.2 | 1.2 | 90 |"
  assert lines[3].startswith("| a | 1 |")


def test_dry_run_prints_one_train_command_per_combination(tmp_path, capsys):
  assert sweep.main(["--config", "configs/debug.py", "--workdir", str(tmp_path),
                     "--grid", "optim.lr=1e-3,3e-3", "--dry-run", "--",
                     "--config.train.num_steps=50"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert len(out) == 2
  assert "--config.optim.lr=3e-3" in out[1] and out[1].endswith("--config.train.num_steps=50")
  assert not os.path.exists(tmp_path / "sweep.md")


def test_token_budget_gives_every_batch_size_the_same_tokens(tmp_path, capsys):
  """--tokens: steps (and a 10 % warmup) from each run's batch x seq_len (debug: T = 128)."""
  assert sweep.main(["--config", "configs/debug.py", "--workdir", str(tmp_path),
                     "--grid", "data.batch_size=8,16,32", "--tokens", "409600", "--dry-run"]) == 0
  out = capsys.readouterr().out.splitlines()
  for line, steps in zip(out, (400, 200, 100)):
    assert line.endswith(f"--config.train.num_steps={steps} "
                         f"--config.optim.warmup_steps={steps // 10}")


def test_unknown_grid_key_is_refused_before_anything_runs(tmp_path, capsys):
  assert sweep.main(["--config", "configs/debug.py", "--workdir", str(tmp_path),
                     "--grid", "optim.learning_rate=1e-3"]) == 2
  assert "unknown config key --config.optim.learning_rate" in capsys.readouterr().err
  assert not os.listdir(tmp_path)


def test_finished_means_final_checkpoint_or_done_marker(tmp_path):
  assert not sweep.finished(tmp_path, 6)
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)
  assert not sweep.finished(tmp_path, 6)
  (tmp_path / "checkpoints" / "6").mkdir()
  assert sweep.finished(tmp_path, 6)
  assert sweep.finished(tmp_path / "other", 6) is False
  (tmp_path / "DONE").touch()
  assert sweep.finished(str(tmp_path), 100)


def test_slots_split_devices_between_concurrent_runs(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=8")
  monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
  assert sweep.slots("cpu", 2, 1) == [({}, None, "all devices")]
  cpu = sweep.slots("cpu", len(os.sched_getaffinity(0)), 2, 1)
  assert [s[0]["XLA_FLAGS"] for s in cpu] == ["--xla_cpu_foo=1 "
                                             "--xla_force_host_platform_device_count=1"] * 2
  assert cpu[0][1] != cpu[1][1] and len(cpu[0][1]) == 1
  gpu = sweep.slots("gpu", 4, 2)
  assert [s[0]["CUDA_VISIBLE_DEVICES"] for s in gpu] == ["0,1", "2,3"]
  tpu = sweep.slots("tpu", 8, 2)
  assert [s[0]["TPU_VISIBLE_CHIPS"] for s in tpu] == ["0,1,2,3", "4,5,6,7"]
  assert {s[0]["TPU_CHIPS_PER_PROCESS_BOUNDS"] for s in tpu} == {"2,2,1"}
  assert {s[0]["TPU_PROCESS_BOUNDS"] for s in tpu} == {"1,1,1"}
  assert len({s[0]["TPU_PROCESS_PORT"] for s in tpu}) == 2
  with pytest.raises(ValueError, match="this host has 2"):
    sweep.slots("gpu", 2, 4)
  with pytest.raises(ValueError, match="--devices-per-run 1, 2, 4, 8"):
    sweep.slots("tpu", 8, 2, 3)


def test_two_run_sweep_in_parallel_end_to_end(tiny_records, tmp_path, capsys):
  work = tmp_path / "sweep"
  args = ["--config", str(REPO / "configs" / "debug.py"), "--workdir", str(work),
          "--grid", "optim.lr=1e-3,3e-3", "--parallel", "2", "--platform", "cpu",
          "--", *tiny_flags(*tiny_records)]
  assert sweep.main(args) == 0, capsys.readouterr()
  names = ["optim.lr=1e-3", "optim.lr=3e-3"]
  for name in names:
    assert (work / name / "DONE").exists() and (work / name / "checkpoints" / "6").exists()
    assert "xla_force_host_platform_device_count=1" in (work / name / "sweep.log").read_text()
    # `swahili100 train` through the dispatcher re-executed itself with jemalloc where it exists
    runtime = json.loads((work / name / "config.json").read_text())["runtime"]
    assert runtime["host_malloc"] == ("jemalloc" if host_memory.find_jemalloc() else "system")
  with open(work / "sweep.csv") as f:
    rows = list(csv.DictReader(f))
  assert sorted(r["run"] for r in rows) == names
  assert all(math.isfinite(float(r["final_loss"])) and math.isfinite(float(r["eval_bpb"]))
             and r["steps"] == "6" for r in rows)
  for plot in ("curves.png", "optim.lr.png"):
    assert (work / "plots" / plot).stat().st_size > 5000
  assert "| optim.lr=1e-3 | 1e-3 | 6 |" in (work / "sweep.md").read_text()
  capsys.readouterr()

  logs = {n: (work / n / "sweep.log").stat().st_size for n in names}
  assert sweep.main(args) == 0
  out = capsys.readouterr()
  assert out.out.count("skip (done): ") == 2 and "0 of 2 runs to train" in out.err
  assert {n: (work / n / "sweep.log").stat().st_size for n in names} == logs
