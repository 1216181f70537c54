"""Several OS processes as one job, as on a pod slice: the real `swahili100 train` command, each
process with fake CPU devices, `jax.distributed` with the coordinator on 127.0.0.1 and gloo.

Every process is started with the command the TPU VM launcher runs on each worker
(`launch/tpu_vm.py` train_argv), bounded in time, and killed in a `finally`.
"""

import json
import os
import re
import signal
import shutil
import socket
import subprocess
import sys
import time

import pytest

import test_train
from conftest import REPO, tiny_flags, xla_flags

sys.path.insert(0, str(REPO / "launch"))
import tpu_vm  # noqa: E402

BIN = os.path.join(os.path.dirname(sys.executable), "swahili100")


def _port() -> int:
  s = socket.socket()
  s.bind(("127.0.0.1", 0))
  port = s.getsockname()[1]
  s.close()
  return port


def _overrides(tiny_records, **extra) -> list[str]:
  return tiny_flags(*tiny_records, **{"mesh.heartbeat_timeout_s": 10, "mesh.init_timeout_s": 60,
                                      "train.barrier_timeout_s": 120, **extra})


def _env(devices: int) -> dict:
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=xla_flags(devices))


class Job:
  """N processes of one training job; logs in <workdir>.p<i>.log."""

  def __init__(self, workdir, overrides, processes: int, devices: int, preexec_fn=None):
    self.workdir, self.port = str(workdir), _port()
    self.logs = [f"{workdir}.p{i}.log" for i in range(processes)]
    if processes == 1:
      argvs = [[BIN, "train", "--config", "configs/debug.py", "--workdir", self.workdir,
                *overrides]]
    else:
      argvs = [tpu_vm.train_argv("configs/debug.py", self.workdir, overrides,
                                 coordinator_address=f"127.0.0.1:{self.port}",
                                 num_processes=processes, process_id=i, python=BIN)
               for i in range(processes)]
    self.procs = [subprocess.Popen(argv, cwd=REPO, env=_env(devices), stdout=open(log, "w"),
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=preexec_fn)
                  for argv, log in zip(argvs, self.logs)]

  def wait(self, timeout: float = 300) -> list:
    deadline, rcs = time.time() + timeout, []
    for p in self.procs:
      try:
        rcs.append(p.wait(timeout=max(1, deadline - time.time())))
      except subprocess.TimeoutExpired:
        rcs.append("timeout")
    return rcs

  def kill(self) -> None:
    for p in self.procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()

  def output(self, i: int) -> str:
    return open(self.logs[i]).read()


def _run(workdir, overrides, processes, devices, timeout=300):
  job = Job(workdir, overrides, processes, devices)
  try:
    rcs = job.wait(timeout)
  finally:
    job.kill()
  assert rcs == [0] * processes, (rcs, [job.output(i)[-2000:] for i in range(processes)])
  return job


def _losses(workdir):
  with open(os.path.join(workdir, "logs", "training.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def _rounds(workdir, step, name):
  """Rounds of documents a process's data stream consumed (each B/P documents)."""
  state = json.load(open(os.path.join(workdir, "checkpoints", str(step), "data", name)))
  return state["parent"]["next_index"]


@pytest.fixture(scope="module")
def two_runs(tiny_records, tmp_path_factory):
  """The same 8 steps as 1 process x 4 devices and as 2 processes x 2 devices, both continuing
  (`init.from`) a 3-step run, as a continued pretraining of an import does."""
  root = tmp_path_factory.mktemp("mp")
  _run(root / "init", _overrides(tiny_records, **{"train.num_steps": 3,
                                                  "train.checkpoint_every": 3}), 1, 1)
  o = _overrides(tiny_records, **{"train.num_steps": 8, "train.checkpoint_every": 4,
                                  "train.keep_last": 5, "init.from": str(root / "init")})
  _run(root / "one", o, 1, 4)
  _run(root / "two", o, 2, 2)
  return root, o, tiny_records


def test_two_processes_train_like_one_and_each_reads_its_share(two_runs):
  root = two_runs[0]
  one, two = _losses(root / "one"), _losses(root / "two")
  assert sorted(one) == sorted(two) == list(range(1, 9))
  assert json.loads((root / "two" / "config.json").read_text())["init"]["from"] == str(
      root / "init")
  assert max(abs(one[s] - two[s]) for s in one) <= 1e-5
  # each process read only its rows' documents: its own rounds of B/2, and together no more
  # rounds than the one process that read every row's
  r1 = _rounds(root / "one", 8, "process_0-of-1.json")
  ra, rb = (_rounds(root / "two", 8, f"process_{i}-of-2.json") for i in range(2))
  assert max(ra, rb) == r1 and min(ra, rb) > 0


def test_two_process_resume_is_bit_exact_and_another_process_count_is_refused(two_runs,
                                                                             tmp_path):
  root, o, tiny_records = two_runs
  resumed = tmp_path / "resumed"
  shutil.copytree(root / "two", resumed)
  shutil.rmtree(resumed / "checkpoints" / "8")
  _run(resumed, o, 2, 2)
  want, got = _losses(root / "two"), _losses(resumed)
  assert [got[s] for s in range(5, 9)] == [want[s] for s in range(5, 9)]
  # 2 -> 1 process: the data position is per process; refused with what to do
  more = _overrides(tiny_records, **{"train.num_steps": 12, "train.checkpoint_every": 4})
  job = Job(resumed, more, 1, 4)
  try:
    rc = job.wait(120)
  finally:
    job.kill()
  assert rc == [2]
  out = job.output(0)
  assert "written by 2 process(es)" in out and "--config.init.from=" in out


def test_sigterm_to_one_process_stops_all_at_one_step_and_resumes_identically(tiny_records,
                                                                              tmp_path):
  # 60 steps: JAX's preemption sync point can land some steps after the signal on a loaded machine.
  steps = 60
  o = _overrides(tiny_records, **{"train.num_steps": steps, "train.checkpoint_every": 1000})
  ref = _run(tmp_path / "ref", o, 2, 2)
  cut = Job(tmp_path / "cut", o, 2, 2)
  try:
    deadline = time.time() + 240
    while time.time() < deadline:
      logged = _losses(cut.workdir) if os.path.exists(os.path.join(
          cut.workdir, "logs", "training.jsonl")) else {}
      if logged and max(logged) >= 10:
        break
      assert all(p.poll() is None for p in cut.procs), "ended before it could be interrupted"
      time.sleep(0.05)
    cut.procs[1].send_signal(signal.SIGTERM)  # as a TPU maintenance event hits one worker
    rcs = cut.wait(120)
  finally:
    cut.kill()
  assert rcs == [0, 0], [cut.output(i)[-1500:] for i in range(2)]
  saved = sorted(int(d) for d in os.listdir(tmp_path / "cut" / "checkpoints") if d.isdigit())
  assert len(saved) == 1 and 10 <= saved[0] < steps
  assert f"preemption: saved {cut.workdir}/checkpoints/{saved[0]}" in cut.output(0)
  _run(tmp_path / "cut", o, 2, 2)
  want, got = _losses(ref.workdir), _losses(cut.workdir)
  assert [got[s] for s in range(saved[0] + 1, steps + 1)] == [
      want[s] for s in range(saved[0] + 1, steps + 1)]


def test_sigkill_of_one_process_ends_the_others_and_the_rerun_resumes(tiny_records, tmp_path):
  o = _overrides(tiny_records, **{"train.num_steps": 400, "train.checkpoint_every": 5})
  job = Job(tmp_path / "run", o, 2, 2)
  try:
    deadline = time.time() + 240
    while time.time() < deadline:
      ckpts = os.path.join(job.workdir, "checkpoints")
      if os.path.isdir(ckpts) and any(d.isdigit() for d in os.listdir(ckpts)):
        break
      time.sleep(0.05)
    job.procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    rc0 = job.procs[0].wait(timeout=60)
    waited = time.time() - killed
  finally:
    job.kill()
  assert rc0 != 0 and waited < 10 + 30  # heartbeat timeout 10 s, plus detection slack
  out = job.output(0)
  assert "tasks are unhealthy" in out and "\n1\n" in out  # names the lost process (task 1)
  last = max(int(d) for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit())
  rerun = _run(tmp_path / "run", _overrides(tiny_records, **{
      "train.num_steps": last + 5, "train.checkpoint_every": 5}), 2, 2)
  assert f"resumed from {rerun.workdir}/checkpoints/{last}" in rerun.output(0)


def test_a_failed_save_stops_every_process_once_and_the_job_resumes_exactly(two_runs, tmp_path):
  """Both processes' saves fail (files over RLIMIT_FSIZE, as on a full shared disk): each stops
  with exit 3 and the one message, no traceback, at the same step; the job resumes from the last
  good checkpoint and logs the uninterrupted job's losses."""
  root, o, tiny_records = two_runs
  longer = _overrides(tiny_records, **{"train.num_steps": 16, "train.checkpoint_every": 4,
                                       "train.keep_last": 5})
  ref, failing = tmp_path / "ref", tmp_path / "failing"
  shutil.copytree(root / "two", ref)
  shutil.copytree(root / "two", failing)
  job = Job(failing, longer, 2, 2, preexec_fn=test_train._limit_file_size(16_000))
  try:
    rcs = job.wait(300)
  finally:
    job.kill()
  outs = [job.output(i) for i in range(2)]
  assert rcs == [3, 3], (rcs, [out[-2000:] for out in outs])
  stops = [re.search(r"Stopped at step (\d+)\. Last good checkpoint: (\S+)\.", out) for out in outs]
  assert all(stops) and stops[0].groups() == stops[1].groups(), outs
  assert stops[0].group(2) == f"{failing}/checkpoints/8"
  assert all("Traceback" not in out for out in outs) and "File too large" in outs[0], outs
  assert "File too large" in outs[1] or "the save of process 0 failed" in outs[1], outs[1]
  _run(failing, longer, 2, 2)
  _run(ref, longer, 2, 2)
  want, got = _losses(ref), _losses(failing)
  assert [got[s] for s in range(9, 17)] == [want[s] for s in range(9, 17)]


@pytest.mark.slow
def test_four_processes_train_like_one(two_runs, tmp_path):
  root, o, _ = two_runs
  _run(tmp_path / "four", o, 4, 1)
  one, four = _losses(root / "one"), _losses(tmp_path / "four")
  assert max(abs(one[s] - four[s]) for s in one) <= 1e-5
