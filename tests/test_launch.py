"""The sweep runner's grid, run naming and comparison table; the CLI dispatcher."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "launch"))
import sweep  # noqa: E402

from swahili100 import cli


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
  _write_log(tmp_path / "a", [{"step": 10, "loss": 3.0, "tokens_per_s": 100.0},
                              {"step": 10, "eval_loss": 2.9, "eval_bpb": 1.5}])
  _write_log(tmp_path / "b", [{"step": 10, "loss": 2.5, "tokens_per_s": 90.0},
                              {"step": 5, "eval_loss": 2.2, "eval_bpb": 1.2},
                              {"step": 10, "eval_loss": 2.4, "eval_bpb": 1.3}])
  rows = [sweep.summarize(str(tmp_path / n)) for n in ("a", "b")]
  assert rows[1]["eval_loss"] == 2.2 and rows[1]["eval_bpb"] == 1.2
  lines = sweep.table(rows).splitlines()
  assert lines[2].startswith("| b | 10 | 2.5 | 2.2 | 1.2 |")
  assert lines[3].startswith("| a |")


def test_dry_run_prints_one_train_command_per_combination(tmp_path, capsys):
  assert sweep.main(["--config", "configs/debug.py", "--workdir", str(tmp_path),
                     "--grid", "optim.lr=1e-3,3e-3", "--dry-run", "--",
                     "--config.train.num_steps=5"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert len(out) == 2
  assert "--config.optim.lr=3e-3" in out[1] and out[1].endswith("--config.train.num_steps=5")
  assert not os.path.exists(tmp_path / "sweep.md")


def test_cli_lists_commands_and_refuses_unknown(capsys):
  assert cli.main(["--help"]) == 0
  assert "train-tokenizer" in capsys.readouterr().out
  assert cli.main(["trian"]) == 2
  assert "unknown command 'trian'" in capsys.readouterr().err
