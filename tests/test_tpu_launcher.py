"""launch/tpu_vm.py: the slice table, the --dry-run commands per generation, and `supervise`
against a fake gcloud first on PATH (tests/fake_gcloud.py). Nothing here reaches the network."""

import json
import os
import shlex
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "launch"))
import tpu_vm  # noqa: E402

FAKE = os.path.join(os.path.dirname(__file__), "fake_gcloud.py")
DATA = ["--workdir", "gs://b/runs/base", "--records", "gs://b/data/processed",
        "--tokenizer", "gs://b/tokenizer/swahili_bpe.json"]

# --tpu-type, accelerator type, runtime version, chips (= devices), hosts, chips per host
SLICES = [
    ("v4-8", "v4-8", "tpu-ubuntu2204-base", 4, 1, 4),
    ("v4-32", "v4-32", "tpu-ubuntu2204-base", 16, 4, 4),
    ("v5e-8", "v5litepod-8", "v2-alpha-tpuv5-lite", 8, 1, 8),
    ("v5litepod-8", "v5litepod-8", "v2-alpha-tpuv5-lite", 8, 1, 8),
    ("v5litepod-32", "v5litepod-32", "v2-alpha-tpuv5-lite", 32, 8, 4),
    ("v5p-8", "v5p-8", "v2-alpha-tpuv5", 4, 1, 4),
    ("v5p-16", "v5p-16", "v2-alpha-tpuv5", 8, 2, 4),
    ("v6e-8", "v6e-8", "v2-alpha-tpuv6e", 8, 1, 8),
    ("v6e-16", "v6e-16", "v2-alpha-tpuv6e", 16, 4, 4),
]


def dry(capsys, *argv) -> list[list[str]]:
  """The commands `--dry-run` prints, split; trainer overrides stay after `--`."""
  argv = list(argv)
  cut = argv.index("--") if "--" in argv else len(argv)
  assert tpu_vm.main([*argv[:cut], "--zone", "us-central2-b", "--dry-run", *argv[cut:]]) == 0
  return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def remote(cmd: list[str]) -> str:
  return next(a.split("=", 1)[1] for a in cmd if a.startswith("--command="))


def worker(cmd: list[str]) -> str:
  return next(a.split("=", 1)[1] for a in cmd if a.startswith("--worker="))


@pytest.mark.parametrize("tpu_type,accel,runtime,chips,hosts,per_host", SLICES)
def test_slice_table(tpu_type, accel, runtime, chips, hosts, per_host):
  s = tpu_vm.parse_tpu_type(tpu_type)
  assert (s.accelerator_type, s.runtime_version, s.chips, s.hosts, s.chips_per_host) == \
      (accel, runtime, chips, hosts, per_host)


@pytest.mark.parametrize("bad", ["v5e-3", "v7-8", "tpu", "v4-12"])
def test_unknown_tpu_type_is_refused_with_the_valid_sizes(bad):
  with pytest.raises(SystemExit, match="--tpu-type"):
    tpu_vm.parse_tpu_type(bad)


@pytest.mark.parametrize("tpu_type,accel,runtime,chips,hosts,per_host", SLICES)
def test_create_commands(capsys, tpu_type, accel, runtime, chips, hosts, per_host):
  (cmd,) = dry(capsys, "create", "--tpu-type", tpu_type)
  assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "swahili100"]
  assert f"--accelerator-type={accel}" in cmd and f"--version={runtime}" in cmd
  assert "--spot" not in cmd
  (cmd,) = dry(capsys, "create", "--tpu-type", tpu_type, "--spot")
  assert "--spot" in cmd
  create, wait = dry(capsys, "create", "--tpu-type", tpu_type, "--queued", "--spot")
  assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "swahili100-qr"]
  assert {"--node-id=swahili100", f"--accelerator-type={accel}", f"--runtime-version={runtime}",
          "--spot"} <= set(create)
  assert wait[3:5] == ["queued-resources", "describe"] and "--format=value(state.state)" in wait


def test_setup_provisions_python_311_with_uv_and_installs_tpu_extra(capsys):
  archive, scp, ssh = dry(capsys, "setup")
  assert archive[:4] == ["git", "-C", tpu_vm.REPO, "archive"] and archive[-1] == "HEAD"
  tarball = archive[-2].split("=", 1)[1]
  assert scp[3:5] == ["tpu-vm", "scp"] and scp[5] == tarball and "--worker=all" in scp
  assert worker(ssh) == "all"
  script = remote(ssh)
  uv = '"$HOME/.local/bin/uv"'
  assert "(curl -LsSf https://astral.sh/uv/0.13.8/install.sh | " \
         'env UV_UNMANAGED_INSTALL="$HOME/.local/bin" sh)' in script
  assert f" && {uv} python install 3.11 && " in script
  assert f"{uv} venv --python 3.11 .venv" in script
  assert f" && {uv} pip install --python .venv/bin/python -e '.[tpu]' && " in script
  assert " && tar -xzf swahili100-src.tar.gz -C swahili100 && cd swahili100 && " in script
  # order: uv before its Python, the venv before the install
  assert script.index("install.sh") < script.index("python install 3.11") < \
      script.index("venv --python 3.11") < script.index("pip install")
  assert "git clone" not in script  # no placeholder URL: the local checkout is shipped


def test_setup_can_clone_a_repo_at_a_ref_instead(capsys):
  (ssh,) = dry(capsys, "setup", "--repo", "https://github.com/me/swahili100.git", "--ref", "v1.2")
  script = remote(ssh)
  assert "git clone https://github.com/me/swahili100.git swahili100" in script
  assert "fetch --tags origin v1.2" in script and "checkout --force FETCH_HEAD" in script
  assert "'.[tpu]'" in script


@pytest.mark.parametrize("tpu_type,accel,runtime,chips,hosts,per_host", SLICES)
def test_run_starts_one_train_per_worker_from_train_argv(capsys, tpu_type, accel, runtime, chips,
                                                         hosts, per_host):
  cmds = dry(capsys, "run", "--tpu-type", tpu_type, *DATA, "--", "--config.optim.lr=1e-3")
  if hosts > 1:  # worker 0's IP is looked up once
    assert cmds[0][3:5] == ["tpu-vm", "describe"] and "--format=json(networkEndpoints)" in cmds[0]
    cmds = cmds[1:]
  preflight, train = cmds[:hosts], cmds[hosts:]
  assert len(train) == hosts
  coordinator = f"{tpu_vm.DRY_RUN_IP}:8476" if hosts > 1 else ""
  overrides = ["--config.data.records_dir=gs://b/data/processed",
               "--config.data.tokenizer=gs://b/tokenizer/swahili_bpe.json",
               "--config.optim.lr=1e-3"]
  for i, (pf, cmd) in enumerate(zip(preflight, train)):
    assert worker(pf) == worker(cmd) == str(i)
    argv = tpu_vm.train_argv("configs/swahili_base.py", "gs://b/runs/base", overrides,
                             coordinator_address=coordinator, num_processes=hosts,
                             process_id=i, python=".venv/bin/swahili100")
    script = remote(cmd)
    assert f" setsid nohup {shlex.join(argv)} >> launcher-logs/train.log 2>&1 < /dev/null &" \
        in script
    assert script.count(" train --config ") == 1
    pf_argv = shlex.split(remote(pf).split("&&", 1)[1])
    assert pf_argv[:3] == [".venv/bin/python", "-m", "swahili100.preflight"]
    flag = lambda name: pf_argv[pf_argv.index(name) + 1]  # noqa: E731
    assert (flag("--process-id"), flag("--num-processes"), flag("--expect-devices"),
            flag("--expect-local-devices")) == (str(i), str(hosts), str(chips), str(per_host))
    assert flag("--records") == "gs://b/data/processed"
  assert [remote(c).count(f"--config.mesh.process_id={i} ") for i, c in enumerate(train)] == \
      [1] * hosts


def test_run_skip_preflight_and_multi_host_coordinator(capsys):
  cmds = dry(capsys, "run", "--tpu-type", "v4-32", *DATA, "--skip-preflight")
  assert len(cmds) == 1 + 4 and "swahili100.preflight" not in " ".join(remote(c) for c in cmds[1:])
  for i, cmd in enumerate(cmds[1:]):
    assert f"--config.mesh.coordinator_address={tpu_vm.DRY_RUN_IP}:8476" in remote(cmd)
    assert f"--config.mesh.num_processes=4 --config.mesh.process_id={i}" in remote(cmd)


def test_train_argv_is_the_exact_contract():
  assert tpu_vm.train_argv("configs/debug.py", "/tmp/w", ["--config.train.num_steps=5"],
                           coordinator_address="127.0.0.1:1234", num_processes=2,
                           process_id=1) == [
      "swahili100", "train", "--config", "configs/debug.py", "--workdir", "/tmp/w",
      "--config.train.num_steps=5", "--config.mesh.coordinator_address=127.0.0.1:1234",
      "--config.mesh.num_processes=2", "--config.mesh.process_id=1"]


def test_run_refuses_a_local_workdir(capsys):
  with pytest.raises(SystemExit, match="gs://"):
    tpu_vm.main(["run", "--zone", "z", "--tpu-type", "v4-8", "--workdir", "runs/x", "--dry-run"])


def test_tail_delete_upload(capsys):
  (tail,) = dry(capsys, "tail", "--worker", "2")
  assert worker(tail) == "2" and remote(tail) == "tail -n 100 -F swahili100/launcher-logs/train.log"
  assert dry(capsys, "delete") == [["gcloud", "compute", "tpus", "tpu-vm", "delete",
                                    "swahili100", "--zone=us-central2-b", "--quiet"]]
  (qr,) = dry(capsys, "delete", "--queued")
  assert qr[3:6] == ["queued-resources", "delete", "swahili100-qr"] and "--force" in qr
  rsync, cp = dry(capsys, "upload-data", *DATA, "--local-records", "data/processed",
                  "--local-tokenizer", "tokenizer/swahili_bpe.json")
  assert rsync == ["gcloud", "storage", "rsync", "--recursive", "data/processed",
                   "gs://b/data/processed"]
  assert cp == ["gcloud", "storage", "cp", "tokenizer/swahili_bpe.json",
                "gs://b/tokenizer/swahili_bpe.json"]


def test_supervise_dry_run_reads_num_steps_from_the_config(capsys):
  cmds = dry(capsys, "supervise", "--tpu-type", "v6e-8", "--spot", *DATA)
  assert cmds[0] == ["gcloud", "storage", "ls",
                     "gs://b/runs/base/checkpoints/16000/commit_success.txt"]
  cmds = dry(capsys, "supervise", "--tpu-type", "v6e-8", *DATA, "--", "--config.train.num_steps=50")
  assert cmds[0][-1] == "gs://b/runs/base/checkpoints/50/commit_success.txt"


# --- supervise against the fake gcloud ----------------------------------------------------------

@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
  """A `gcloud` first on PATH that records calls; returns (set_states, calls)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  wrapper = bin_dir / "gcloud"
  wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(FAKE)} \"$@\"\n")
  wrapper.chmod(0o755)
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  monkeypatch.setenv("FAKE_GCLOUD_DIR", str(tmp_path))
  assert shutil.which("gcloud") == str(wrapper)

  def set_states(*states, workers=1):
    (tmp_path / "states").write_text("\n".join(states) + "\n")
    monkeypatch.setenv("FAKE_GCLOUD_WORKERS", str(workers))

  def calls():
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
  return set_states, calls


def label(argv: list[str]) -> str:
  """One word per call: ls, state, ips, create, delete, setup, preflight:i, train:i."""
  if argv[:2] == ["storage", "ls"]:
    return "ls"
  if "describe" in argv:
    return "ips" if "--format=json(networkEndpoints)" in argv else "state"
  for verb in ("create", "delete"):
    if verb in argv:
      return f"qr-{verb}" if "queued-resources" in argv else verb
  if "ssh" in argv:
    cmd = next(a for a in argv if a.startswith("--command="))
    w = next(a.split("=", 1)[1] for a in argv if a.startswith("--worker="))
    kind = ("setup" if "uv" in cmd else "preflight" if "preflight" in cmd
            else "probe" if cmd.startswith("--command=kill -0") else "train")
    return kind if w == "all" else f"{kind}:{w}"
  return " ".join(argv[:3])


def phases(labels: list[str]) -> list[str]:
  """Parallel per-worker calls land in any order: fold each run of them into 'kind:0-3'."""
  out = []
  for lab in labels:
    kind, _, w = lab.partition(":")
    if w and out and out[-1][0] == kind:
      out[-1][1].add(int(w))
    else:
      out.append((kind, {int(w)} if w else set()))
  return [k if not ws else f"{k}:{min(ws)}-{max(ws)}" if len(ws) == max(ws) - min(ws) + 1
          else f"{k}:{sorted(ws)}" for k, ws in out]


SUPERVISE = ["supervise", "--zone", "us-west4-a", "--poll-interval", "0", "--num-steps", "20",
             "--repo", "https://github.com/me/swahili100.git", *DATA]


def test_supervise_recreates_a_preempted_spot_slice_until_done(fake_gcloud):
  set_states, calls = fake_gcloud
  set_states("NOT_FOUND", "READY", "PREEMPTED", "READY", "DONE", workers=4)
  assert tpu_vm.main([*SUPERVISE, "--tpu-type", "v5litepod-16", "--spot"]) == 0
  launch = ["setup", "ips", "preflight:0-3", "train:0-3"]
  assert phases([label(c) for c in calls()]) == [
      "ls", "state", "create",
      "ls", "state", *launch,
      "ls", "state", "delete", "create",      # PREEMPTED: delete, create, set up, run again
      "ls", "state", *launch,
      "ls", "state",                          # DONE: the final checkpoint is there
      "ls", "delete"]
  creates = [c for c in calls() if label(c) == "create"]
  assert all("--spot" in c and "--accelerator-type=v5litepod-16" in c for c in creates)
  trains = [c for c in calls() if label(c).startswith("train")]
  assert {a for c in trains for a in c if a.startswith("--command=")} and all(
      "--config.mesh.coordinator_address=10.0.0.2:8476" in remote(c) for c in trains)


def test_supervise_queued_resource_is_deleted_at_the_end(fake_gcloud):
  set_states, calls = fake_gcloud
  set_states("NOT_FOUND", "WAITING_FOR_RESOURCES", "ACTIVE", "SUSPENDED", "PROVISIONING",
             "ACTIVE", "DONE")
  assert tpu_vm.main([*SUPERVISE, "--tpu-type", "v6e-8", "--spot", "--queued"]) == 0
  launch = ["setup", "preflight:0-0", "train:0-0"]  # one host: no IP lookup
  assert phases([label(c) for c in calls()]) == [
      "ls", "state", "qr-create",
      "ls", "state",                          # WAITING_FOR_RESOURCES: keep polling
      "ls", "state", *launch,
      "ls", "state", "qr-delete", "qr-create",  # SUSPENDED (preempted): recreate
      "ls", "state",
      "ls", "state", *launch,
      "ls", "state",
      "ls", "qr-delete"]
  final = calls()[-1]
  assert final[:4] == ["compute", "tpus", "queued-resources", "delete"] and "--force" in final


def test_supervise_gives_up_after_max_restarts(fake_gcloud, capsys):
  set_states, calls = fake_gcloud
  set_states("READY", "PREEMPTED")
  assert tpu_vm.main([*SUPERVISE, "--tpu-type", "v4-8", "--spot", "--max-restarts", "2"]) == 1
  assert "--max-restarts" in capsys.readouterr().err
  assert [label(c) for c in calls()].count("create") == 2


def test_supervise_watches_a_run_that_is_already_training(fake_gcloud, monkeypatch):
  set_states, calls = fake_gcloud
  set_states("READY", "READY", "DONE")
  monkeypatch.setenv("FAKE_GCLOUD_ALIVE", "1")
  assert tpu_vm.main([*SUPERVISE, "--tpu-type", "v4-8", "--spot", "--keep"]) == 0
  assert phases([label(c) for c in calls()]) == [
      "ls", "state", "probe:0-0", "ls", "state", "ls", "state", "ls"]  # no setup, no delete


def test_supervise_retries_a_create_that_found_no_capacity(fake_gcloud, monkeypatch, tmp_path):
  set_states, calls = fake_gcloud
  set_states("NOT_FOUND", "NOT_FOUND", "READY", "DONE")
  monkeypatch.setenv("FAKE_GCLOUD_FAIL_CREATES", "1")
  assert tpu_vm.main([*SUPERVISE, "--tpu-type", "v4-8", "--spot"]) == 0
  assert [label(c) for c in calls()].count("create") == 2


def test_dry_run_runs_nothing(fake_gcloud, capsys, tmp_path):
  set_states, calls = fake_gcloud
  set_states("READY")
  name = f"dry-{os.getpid()}"
  out = dry(capsys, "supervise", "--name", name, "--tpu-type", "v4-32", "--spot", *DATA,
            "--num-steps", "10")
  assert calls() == [] and not os.path.exists(tpu_vm._local_tarball(
      type("A", (), {"name": name})()))
  assert out[-1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]
