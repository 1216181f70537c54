"""W&B tracking (offline): the run's history read back with wandb's own reader equals
training.jsonl, a resume continues the same W&B run, and a missing package stops nothing."""

import glob
import json
import os

import pytest

from swahili100 import config_lib, train, tracking
from conftest import tiny_config

wandb = pytest.importorskip("wandb")


def wandb_history(workdir) -> tuple[set, dict, dict]:
  """(run ids, {step: row}, config) of every offline .wandb file under `<workdir>/wandb/`."""
  from wandb.proto import wandb_internal_pb2 as pb
  from wandb.sdk.internal import datastore
  ids, rows, config = set(), {}, {}
  for path in sorted(glob.glob(os.path.join(workdir, "wandb", "**", "*.wandb"), recursive=True)):
    ds = datastore.DataStore()
    ds.open_for_scan(path)
    while (data := ds.scan_data()) is not None:
      record = pb.Record()
      record.ParseFromString(data)
      kind = record.WhichOneof("record_type")
      if kind == "run":
        ids.add(record.run.run_id)
        config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
      elif kind == "config":
        config.update({i.key: json.loads(i.value_json) for i in record.config.update})
      elif kind == "history":
        item = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                for i in record.history.item}
        rows.setdefault(int(item["_step"]), {}).update(item)
  return ids, rows, config


def test_offline_run_matches_training_log_and_resumes_the_same_run(tiny_records, tmp_path):
  workdir = str(tmp_path / "run")
  flags = {"train.wandb.mode": "offline", "train.wandb.project": "swahili100-test",
           "train.checkpoint_every": 3, "train.eval_every": 3}
  assert train.run(tiny_config(*tiny_records, **flags, **{"train.num_steps": 6}), workdir) == 0
  run_id = open(os.path.join(workdir, tracking.ID_FILE)).read().strip()
  assert train.run(tiny_config(*tiny_records, **flags, **{"train.num_steps": 9}), workdir) == 0
  ids, history, wb_config = wandb_history(workdir)
  assert ids == {run_id}                                   # the restart continued that W&B run
  logged = [json.loads(line) for line in open(os.path.join(workdir, "logs", "training.jsonl"))]
  train_rows = [r for r in logged if "loss" in r]
  eval_rows = [r for r in logged if "eval_loss" in r]
  assert [r["step"] for r in train_rows] == list(range(1, 10))
  assert {s: h["loss"] for s, h in history.items() if "loss" in h} == {
      r["step"]: r["loss"] for r in train_rows}
  assert {s: h["eval_bpb"] for s, h in history.items() if "eval_bpb" in h} == {
      r["step"]: r["eval_bpb"] for r in eval_rows}
  # the W&B run's config is config.json's: the config and what the run resolved
  saved = json.loads(open(os.path.join(workdir, "config.json")).read())
  unwrap = lambda v: v["value"] if isinstance(v, dict) and set(v) >= {"value"} else v  # noqa: E731
  assert unwrap(wb_config["runtime"]) == saved["runtime"]
  assert unwrap(wb_config["optim"]) == saved["optim"]


def test_missing_package_or_bad_mode(tiny_records, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(tracking, "wandb", None)   # what its guarded import leaves without wandb
  workdir = str(tmp_path / "run")
  config = tiny_config(*tiny_records, **{"train.wandb.mode": "offline", "train.num_steps": 3})
  assert train.run(config, workdir) == 0
  assert "W&B logging is off: the wandb package is not installed" in capsys.readouterr().err
  assert not os.path.exists(os.path.join(workdir, "wandb"))
  with pytest.raises(config_lib.ConfigError, match="wandb.mode='on'"):
    tracking.WandbRun({"mode": "on"}, workdir, {})
