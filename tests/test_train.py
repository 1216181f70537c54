"""Training end to end: logs, checkpoints, bit-exact resume, preemption, SIGKILL, NaN, generate."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from swahili100 import checkpoint, evaluate, generate, host_memory, train
from swahili100.export import main as export_main
from swahili100.export import quantize
from swahili100 import evals as evals_lib

from conftest import REPO, tiny_config, tiny_flags


def _losses(workdir):
  with open(os.path.join(workdir, "logs", "training.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


@pytest.fixture(scope="module")
def run12(tiny_records, tmp_path_factory):
  """An uninterrupted 12-step run with checkpoints at 6 and 12."""
  workdir = str(tmp_path_factory.mktemp("run") / "run12")
  config = tiny_config(*tiny_records, **{"train.num_steps": 12, "train.checkpoint_every": 6,
                                         "train.keep_last": 5, "train.eval_every": 6})
  assert train.run(config, workdir) == 0
  return workdir, config


def test_run_logs_decreasing_loss_config_and_checkpoints(run12):
  workdir, _ = run12
  with open(os.path.join(workdir, "logs", "training.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == list(range(1, 13))
  for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"):
    assert all(np.isfinite(r[key]) for r in train_rows), key
  # against the measured peak of this CPU (a big float32 matmul), never the nominal one
  assert all(0 <= r["mfu"] < 1 for r in train_rows) and max(r["mfu"] for r in train_rows) > 0
  assert train_rows[-1]["loss"] < train_rows[0]["loss"] - 0.3
  evals = [r for r in rows if "eval_loss" in r]
  assert [r["step"] for r in evals] == [6, 12] and 0 < evals[-1]["eval_bpb"] < 8
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["train"]["num_steps"] == 12 and saved["model"]["d_model"] == 32
  assert saved["runtime"]["host_malloc"] == host_memory.active()  # in-process: never re-executed
  assert _steps(workdir) == [6, 12]


def test_resume_is_bit_exact(run12, tmp_path):
  """12 uninterrupted steps == 6 steps + resume from checkpoint 6 + 6 steps, float for float."""
  workdir, config = run12
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "12"))
  os.remove(os.path.join(resumed, "logs", "training.jsonl"))
  assert train.run(config, resumed, resume=os.path.join(resumed, "checkpoints", "6")) == 0
  want, got = _losses(workdir), _losses(resumed)
  assert sorted(got) == list(range(7, 13))
  assert [got[s] for s in got] == [want[s] for s in got]


def test_load_model_and_generate_cli_on_a_real_checkpoint(run12, capsys):
  workdir, config = run12
  cfg, model = checkpoint.load_model(os.path.join(workdir, "checkpoints", "6"))
  assert cfg.model.d_model == 32
  ids = generate.generate_ids(model, [5, 6, 7], 8, temperature=0.0, eos_id=None)
  assert len(ids) == 8
  assert generate.main(["--checkpoint", workdir, "--prompt", "Habari za leo",
                        "--max-new-tokens", "8", "--temperature", "0"]) in (0, None)
  assert "Habari za leo" in capsys.readouterr().out
  assert generate.main(["--checkpoint", workdir, "--prompt", "Habari za leo", "--chat",
                        "--max-new-tokens", "8", "--temperature", "0"]) in (0, None)
  assert "Habari za leo" not in capsys.readouterr().out  # only the assistant's reply


def _train_cmd(records, workdir, **overrides):
  flags = tiny_flags(*records, **{"data.prefetch": 2, "train.eval_batches": 1, **overrides})
  return [sys.executable, "-m", "swahili100.train", "--config", str(REPO / "configs" / "debug.py"),
          "--workdir", workdir, *flags]


def _wait_for(pred, proc, timeout=120):
  end = time.time() + timeout
  while time.time() < end:
    if pred():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.05)
  return False


@pytest.mark.slow
def test_sigterm_saves_exits_zero_and_resume_completes(tiny_records, tmp_path):
  workdir = str(tmp_path / "pre")
  cmd = _train_cmd(tiny_records, workdir, **{"train.num_steps": 2000,
                                             "train.checkpoint_every": 1000})
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  log = os.path.join(workdir, "logs", "training.jsonl")
  assert _wait_for(lambda: os.path.exists(log) and len(open(log).readlines()) >= 3, proc)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "preemption: saved" in out
  # the command re-executed itself with jemalloc (then took the signal) where the library exists
  recorded = json.load(open(os.path.join(workdir, "config.json")))["runtime"]["host_malloc"]
  assert recorded == ("jemalloc" if host_memory.find_jemalloc() else "system")
  (step,) = _steps(workdir)
  assert 3 <= step < 2000
  cmd = _train_cmd(tiny_records, workdir, **{"train.num_steps": step + 3,
                                             "train.checkpoint_every": 1000})
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  assert f"resumed from {workdir}/checkpoints/{step}" in done.stdout
  assert max(_losses(workdir)) == step + 3 and _steps(workdir)[-1] == step + 3


@pytest.mark.slow
def test_sigkill_mid_save_leaves_previous_checkpoint_restorable(tiny_records, tmp_path):
  workdir = str(tmp_path / "kill")
  cmd = _train_cmd(tiny_records, workdir, **{"train.num_steps": 5000,
                                             "train.checkpoint_every": 1, "train.keep_last": 3,
                                             "model.d_model": 128, "model.mlp_dim": 512})
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpts = os.path.join(workdir, "checkpoints")
  in_flight = lambda: os.path.isdir(ckpts) and len(os.listdir(ckpts)) >= 3 and any(  # noqa: E731
      not d.isdigit() for d in os.listdir(ckpts))
  seen_tmp = _wait_for(in_flight, proc, timeout=180)
  proc.kill()
  proc.wait()
  assert seen_tmp, "never saw a save in flight"
  cfg, model = checkpoint.load_model(workdir)  # newest complete step restores
  assert cfg.model.d_model == 128
  resumed = subprocess.run(
      _train_cmd(tiny_records, workdir, **{"train.num_steps": max(_steps(workdir)) + 2,
                                           "train.checkpoint_every": 1, "train.keep_last": 3,
                                           "model.d_model": 128, "model.mlp_dim": 512}),
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(run12, tmp_path, capsys):
  workdir, config = run12
  nan_dir = str(tmp_path / "nan")
  shutil.copytree(workdir, nan_dir)
  shutil.rmtree(os.path.join(nan_dir, "checkpoints", "12"))
  config = tiny_config(config.data.records_dir, config.data.tokenizer, config.model.vocab_size,
                       **{"train.num_steps": 12, "train.checkpoint_every": 2,
                          "optim.lr": 1e30, "optim.warmup_steps": 1})
  assert train.run(config, nan_dir) == 1
  err = capsys.readouterr().err
  assert "became NaN/Inf at step" in err and "checkpoints/6" in err
  assert _steps(nan_dir) == [6]
  _, model = checkpoint.load_model(nan_dir)
  assert np.isfinite(np.asarray(model.embed.embedding[...])).all()


def test_resume_refuses_a_missing_step(run12, capsys):
  workdir, config = run12
  assert train.main(["--config", str(REPO / "configs" / "debug.py"), "--workdir", workdir,
                     "--resume", os.path.join(workdir, "checkpoints", "7"),
                     f"--config.data.records_dir={config.data.records_dir}",
                     f"--config.data.tokenizer={config.data.tokenizer}",
                     f"--config.model.vocab_size={config.model.vocab_size}"]) == 2
  assert "step 7 is not a complete checkpoint" in capsys.readouterr().err
  assert json.load(open(os.path.join(workdir, "config.json")))["model"]["d_model"] == 32


def test_resume_refuses_a_different_model_config(run12, capsys):
  workdir, config = run12
  before = open(os.path.join(workdir, "config.json")).read()
  assert train.main(["--config", str(REPO / "configs" / "debug.py"), "--workdir", workdir,
                     f"--config.data.records_dir={config.data.records_dir}",
                     f"--config.data.tokenizer={config.data.tokenizer}",
                     f"--config.model.vocab_size={config.model.vocab_size}"]) == 2
  err = capsys.readouterr().err
  assert "different config" in err and "model.d_model: saved 32, now 128" in err
  assert open(os.path.join(workdir, "config.json")).read() == before


def test_evaluate_cli_matches_training_eval_and_scores_xcopa(run12, tmp_path):
  from swahili100 import evaluate
  workdir, _ = run12
  xcopa = tmp_path / "xcopa.jsonl"
  items = [{"premise": "Mvua ilinyesha.", "choice1": "Ardhi ililowa.", "choice2": "Jua liliwaka.",
            "question": "effect", "label": 0},
           {"premise": "Mtoto alilia.", "choice1": "Alianguka.", "choice2": "Alicheka.",
            "question": "cause", "label": 0}]
  xcopa.write_text("\n".join(json.dumps(i) for i in items))
  out = tmp_path / "eval.json"
  assert evaluate.main(["--checkpoint", workdir, "--tasks", "bpb,xcopa", "--max-batches", "2",
                        "--data", f"xcopa={xcopa}", "--output", str(out)]) == 0
  report = json.load(open(out))
  with open(os.path.join(workdir, "logs", "training.jsonl")) as f:
    final = [json.loads(l) for l in f if "eval_loss" in l][-1]
  assert report["step"] == 12
  assert report["tasks"]["bpb"]["loss"] == pytest.approx(final["eval_loss"], rel=1e-5)
  assert report["tasks"]["bpb"]["bpb"] == pytest.approx(final["eval_bpb"], rel=1e-5)
  x = report["tasks"]["xcopa"]
  assert x["n"] == 2 and x["acc"] in (0.0, 0.5, 1.0) and x["chance"] == 0.5
  assert len((tmp_path / "eval.items.jsonl").read_text().splitlines()) == 2


def test_grain_worker_processes_give_the_same_batches_and_resume_exactly(tiny_records, tmp_path):
  """data.worker_count=2 (Grain worker processes) trains on exactly the batches of 0 workers,
  and resumes bit-exactly; resuming with another worker count is refused (its position format
  differs)."""
  runs = {}
  for workers in (0, 2):
    config = tiny_config(*tiny_records, **{"data.worker_count": workers, "train.num_steps": 6,
                                           "train.checkpoint_every": 3, "train.keep_last": 5})
    workdir = str(tmp_path / f"w{workers}")
    assert train.run(config, workdir) == 0
    runs[workers] = (workdir, config)
  assert _losses(runs[0][0]) == _losses(runs[2][0])
  workdir, config = runs[2]
  resumed = str(tmp_path / "w2-resumed")
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "6"))
  assert train.run(config, resumed, resume=os.path.join(resumed, "checkpoints", "3")) == 0
  assert [_losses(resumed)[s] for s in (4, 5, 6)] == [_losses(workdir)[s] for s in (4, 5, 6)]
  other = tiny_config(*tiny_records, **{"data.worker_count": 0, "train.num_steps": 9})
  with pytest.raises(checkpoint.CheckpointError, match="data.worker_count: saved 2, now 0"):
    train.run(other, resumed)


def test_unreadable_latest_checkpoint_is_reported_and_the_run_falls_back(run12, tmp_path, capsys):
  """A complete but unreadable newest step is moved aside with a warning; the run resumes from
  the newest good one and saves that step again (never silently skipping later saves)."""
  workdir, config = run12
  broken = str(tmp_path / "broken")
  shutil.copytree(workdir, broken)
  for root, _, files in os.walk(os.path.join(broken, "checkpoints", "12", "params")):
    for name in files:
      if os.path.basename(root) == "d":  # the array data files: truncated as by a bad disk
        open(os.path.join(root, name), "wb").close()
  longer = config.copy_and_resolve_references()
  longer.train.num_steps = 18
  capsys.readouterr()
  assert train.run(longer, broken) == 0
  err = capsys.readouterr().err
  assert "checkpoints/12 is unreadable" in err and "resuming from step 6" in err
  assert _steps(broken) == [6, 12, 18]
  assert os.path.isdir(os.path.join(broken, "checkpoints", "12.unreadable"))
  # the state of step 6 came back exactly (later steps differ: 18 steps is another schedule)
  assert _losses(broken)[7] == _losses(workdir)[7]


def test_eval_tasks_run_at_eval_steps_next_to_the_loss(tiny_records, tmp_path):
  """config.train.eval_tasks: an XCOPA-format file scored under the training mesh at each eval
  step, logged to training.jsonl beside the validation bits per byte."""
  items = [{"premise": "Mvua ilinyesha.", "choice1": "Barabara zililowa.",
            "choice2": "Jua liliwaka.", "question": "effect", "label": 0, "idx": i}
           for i in range(6)]
  xcopa = tmp_path / "xcopa.jsonl"
  xcopa.write_text("".join(json.dumps(x) + "\n" for x in items))
  config = tiny_config(*tiny_records, **{"train.num_steps": 6, "train.eval_every": 3,
                                         "train.eval_tasks": "xcopa",
                                         "train.eval_data": f"xcopa={xcopa}"})
  workdir = str(tmp_path / "run")
  assert train.run(config, workdir) == 0
  rows = [json.loads(line) for line in open(os.path.join(workdir, "logs", "training.jsonl"))]
  evals = [r for r in rows if "eval_xcopa_acc" in r]
  assert [r["step"] for r in evals] == [3, 6]
  assert all(r["eval_xcopa_acc"] in (0.0, 1.0) and "eval_bpb" in r for r in evals)
  missing = tiny_config(*tiny_records, **{"train.eval_tasks": "xcopa"})
  with pytest.raises(evals_lib.EvalDataError, match="config.train.eval_data"):
    train.run(missing, str(tmp_path / "missing"))


def test_unwritable_workdir_is_named_before_compiling(tiny_records, tmp_path, capsys):
  """A workdir the process may not write (here: a path under a plain file, which fails as a
  read-only mount or a forbidden bucket does) is refused with exit 2 and its name."""
  (tmp_path / "file").write_text("not a folder")
  workdir = str(tmp_path / "file" / "run")
  start = time.perf_counter()
  assert train.main(["--config", "configs/debug.py", "--workdir", workdir,
                     *tiny_flags(*tiny_records)]) == 2
  err = capsys.readouterr().err
  assert f"cannot write to the workdir {workdir}" in err and "Traceback" not in err
  assert time.perf_counter() - start < 30   # before any compilation


def test_train_warns_when_the_disk_cannot_hold_its_checkpoints(tiny_records, tmp_path, capsys,
                                                               monkeypatch):
  from swahili100 import engine
  real = shutil.disk_usage
  monkeypatch.setattr(engine.shutil, "disk_usage",
                      lambda p: real(p)._replace(free=50_000))   # 50 kB: under 3 checkpoints
  config = tiny_config(*tiny_records, **{"train.num_steps": 3, "train.keep_last": 2})
  assert train.run(config, str(tmp_path / "run")) == 0
  err = capsys.readouterr().err
  assert "GiB free, less than 3 checkpoints" in err and "train.keep_last=2" in err


def test_cpu_only_machine_starts_quietly(monkeypatch, run12, caplog):
  """No accelerator device and no JAX_PLATFORMS: the dispatcher says cpu (libtpu would print
  its errors); a device or an explicit setting is left alone. Reading checkpoints logs no
  Orbax warning meant for developers."""
  import logging

  from swahili100 import cli
  for var in [k for k in os.environ if k.startswith(("TPU_", "COLAB_TPU", "JAX_PLATFORMS"))]:
    monkeypatch.delenv(var)
  monkeypatch.setattr(cli.glob, "glob", lambda pattern: [])
  cli._cpu_when_no_accelerator()
  assert os.environ["JAX_PLATFORMS"] == "cpu"
  monkeypatch.delenv("JAX_PLATFORMS")
  monkeypatch.setattr(cli.glob, "glob", lambda p: ["/dev/vfio/0"] if "vfio" in p else [])
  cli._cpu_when_no_accelerator()                   # a TPU VM: JAX finds its TPU
  assert "JAX_PLATFORMS" not in os.environ
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  monkeypatch.setattr(cli.glob, "glob", lambda pattern: [])
  cli._cpu_when_no_accelerator()
  assert os.environ["JAX_PLATFORMS"] == "cuda"
  with caplog.at_level(logging.WARNING):
    assert checkpoint.latest_step(run12[0]) == 12
  assert not [r for r in caplog.records if "read_only" in r.getMessage()]


def _limit_file_size(nbytes):
  """A child's files cannot grow past `nbytes`: writes fail with EFBIG ('File too large') as a
  full disk fails them with ENOSPC, without root or a mount."""
  def limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # an error from write(), not a signal death
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
  return limit


def test_a_failed_save_stops_once_and_the_run_resumes_exactly(run12, tiny_records, tmp_path):
  """A save the storage refuses stops the run with exit 3 and one short message (the cause, the
  workdir, the last good checkpoint, the command to resume): no traceback. The next start
  resumes from that checkpoint and logs the uninterrupted run's losses, bit for bit."""
  workdir, config = run12
  longer = {"train.num_steps": 24, "train.checkpoint_every": 6, "train.keep_last": 5}
  ref, failing = str(tmp_path / "ref"), str(tmp_path / "failing")
  shutil.copytree(workdir, ref)
  shutil.copytree(workdir, failing)
  cmd = _train_cmd(tiny_records, failing, **longer)
  # 16 kB: every save fails (its metadata and data files are larger); logs and config.json fit
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                       preexec_fn=_limit_file_size(16_000))
  text = out.stdout + out.stderr
  assert out.returncode == checkpoint.SAVE_FAILED, text[-3000:]
  lines = out.stderr.strip().splitlines()
  after = len(lines) - max(i for i, line in enumerate(lines) if line.startswith("step "))
  assert "Traceback" not in text and after <= 6, out.stderr
  assert "File too large" in out.stderr and f"{failing}/checkpoints/12" in out.stderr, out.stderr
  assert re.search(r"Stopped at step (1[89]|2[0-4])\.", out.stderr), out.stderr
  assert f"python -m swahili100.train --config" in out.stderr   # the command that resumes
  assert _steps(failing) == [6, 12]
  resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from {failing}/checkpoints/12" in resumed.stdout
  assert subprocess.run(_train_cmd(tiny_records, ref, **longer), cwd=REPO,
                        capture_output=True, timeout=300).returncode == 0
  want, got = _losses(ref), _losses(failing)
  assert [got[s] for s in range(13, 25) if s in want] == [want[s] for s in range(13, 25) if s in want]
  assert max(want) == 24


def test_a_failed_log_write_stops_like_a_failed_save_and_the_resume_mends_the_log(
    run12, tiny_records, tmp_path):
  """training.jsonl cannot grow (the storage refuses the write) before any save fails: the run
  stops with exit 3 and the same one message, and the next start resumes from the last
  checkpoint with a log that has one row per step (the torn row dropped)."""
  workdir, _ = run12
  failing = str(tmp_path / "failing")
  shutil.copytree(workdir, failing)
  log = os.path.join(failing, "logs", "training.jsonl")
  # a few rows more fit; config.json and the new TensorBoard file stay under the limit
  limit = max(os.path.getsize(log), os.path.getsize(os.path.join(failing, "config.json"))) + 700
  cmd = _train_cmd(tiny_records, failing, **{"train.num_steps": 40,
                                             "train.checkpoint_every": 1000})
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                       preexec_fn=_limit_file_size(limit))
  assert out.returncode == checkpoint.SAVE_FAILED, (out.stdout + out.stderr)[-3000:]
  assert "Traceback" not in out.stderr and "File too large" in out.stderr, out.stderr
  assert f"writing the training log to {failing} failed" in out.stderr, out.stderr
  assert f"Last good checkpoint: {failing}/checkpoints/12" in out.stderr, out.stderr
  resumed = subprocess.run(_train_cmd(tiny_records, failing, **{"train.num_steps": 15}),
                           cwd=REPO, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert sorted(_losses(failing)) == list(range(1, 16))


def test_the_phases_refuse_an_unreadable_newest_step_by_name_and_offer_the_one_before(
    run12, tmp_path, capsys):
  """evaluate, export, generate and quantize given a run whose newest step is damaged: exit 2,
  the step named, the step before offered; nothing is silently read from another step."""
  workdir, _ = run12
  broken = str(tmp_path / "broken")
  shutil.copytree(workdir, broken)
  for root, _, files in os.walk(os.path.join(broken, "checkpoints", "12", "params")):
    for name in files:
      if os.path.basename(root) == "d":
        open(os.path.join(root, name), "wb").close()
  capsys.readouterr()
  for main, args in ((generate.main, ["--prompt", "Habari", "--max-new-tokens", "2"]),
                     (evaluate.main, ["--tasks", "bpb", "--output", str(tmp_path / "e.json")]),
                     (export_main.main, ["--format", "hf", "--output", str(tmp_path / "hf")]),
                     (quantize.main, ["--output", str(tmp_path / "q")])):
    assert main(["--checkpoint", broken, *args]) == 2, main
    err = capsys.readouterr().err
    assert f"{broken}/checkpoints/12 is unreadable" in err, err
    assert f"use the step before: {broken}/checkpoints/6" in err and "Traceback" not in err, err
