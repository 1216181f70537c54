"""launch/skypilot/*.yaml: read by SkyPilot's own parser (`sky.Task.from_yaml_config`, which
validates the task and resources against SkyPilot's JSON schemas and builds the Task and its
Resources, as `sky launch` and `sky jobs launch` do before provisioning), and the run block run
with stand-in binaries, which must start on every host what launch/tpu_vm.py starts on each worker.

SkyPilot is the `launch` extra; without it this module skips. SkyPilot is imported only in a child
process whose HOME is a temporary folder (importing `sky` creates ~/.sky databases) and whose
sockets refuse to connect: nothing reaches a cloud or downloads a catalog. Parsing needs neither:
TPU Resources are built without the catalog, so the check that GCP offers an accelerator in some
zone is left to `sky launch`.
"""

import importlib.util
import json
import os
import shlex
import subprocess
import sys

import pytest
import yaml

if importlib.util.find_spec("sky") is None:  # not importorskip: importing sky writes ~/.sky
  pytest.skip("SkyPilot is not installed (pip install -e '.[launch]')", allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import tpu_vm  # noqa: E402

YAMLS = {"tpu_vm.yaml": 1, "tpu_pod.yaml": 4}  # file -> hosts of its slice
ENV = {"WORKDIR": "gs://b/runs/base", "RECORDS": "gs://b/data/processed",
       "TOKENIZER": "gs://b/tokenizer/swahili_bpe.json"}
OVERRIDES = ["--config.optim.lr=1e-3", "--config.train.num_steps=100"]

# Runs in the child: block the network, import sky, parse every case, print JSON.
CHILD = r"""
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
  attempts.append(repr(args[:2])[:200])
  raise OSError("network disabled in tests/test_skypilot.py")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse

import yaml
import sky
try:
  from sky.jobs import RECOVERY_STRATEGIES  # the pinned 0.8
except ImportError:  # later releases: a registry that importing recovery_strategy fills
  from sky.jobs import recovery_strategy  # noqa: F401
  from sky.utils.registry import JOBS_RECOVERY_STRATEGY_REGISTRY as RECOVERY_STRATEGIES

out = {"version": sky.__version__, "strategies": sorted(s.upper() for s in RECOVERY_STRATEGIES),
       "cases": []}
for case in json.load(sys.stdin):
  with open(case["path"]) as f:
    config = yaml.safe_load(f)
  try:
    task = sky.Task.from_yaml_config(config, env_overrides=case["env"] or None)
  except Exception as e:  # noqa: BLE001 (reported to the test)
    out["cases"].append({"error": f"{type(e).__name__}: {e}"})
    continue
  (r,) = task.resources
  out["cases"].append({
      "name": task.name, "num_nodes": task.num_nodes, "workdir": task.workdir,
      "envs": task.envs, "setup": task.setup, "run": task.run,
      "storage_mounts": sorted(task.storage_mounts), "file_mounts": task.file_mounts,
      "cloud": str(r.cloud), "accelerators": r.accelerators,
      "accelerator_args": r.accelerator_args, "use_spot": r.use_spot,
      "job_recovery": r.job_recovery, "instance_type": r.instance_type,
      "region": r.region, "zone": r.zone})
out["network_attempts"] = attempts
print(json.dumps(out))
"""


def yaml_path(name: str) -> str:
  return os.path.join(REPO, "launch", "skypilot", name)


@pytest.fixture(scope="module")
def sky_parse(tmp_path_factory):
  """parse(cases) -> SkyPilot's reading of each (path, env) case; one child process for all."""
  home = tmp_path_factory.mktemp("sky_home")
  bad = tmp_path_factory.mktemp("bad_yaml")
  with open(yaml_path("tpu_vm.yaml")) as f:
    config = yaml.safe_load(f)
  config["resources"]["accelerator_args"]["tpu_vm"] = "yes"   # the resources schema: a bool
  typo = dict(config, resource=config["resources"])           # the task schema: no such key
  for name, c in (("bad_type.yaml", config), ("bad_key.yaml", typo)):
    with open(bad / name, "w") as f:
      yaml.safe_dump(c, f)
  env = sorted(ENV.items()) + [("OVERRIDES", " ".join(OVERRIDES))]
  cases = [(yaml_path(n), env) for n in YAMLS] + [(yaml_path(n), []) for n in YAMLS] + \
      [(str(bad / "bad_type.yaml"), env), (str(bad / "bad_key.yaml"), env)]
  res = subprocess.run(
      [sys.executable, "-c", CHILD], input=json.dumps([{"path": p, "env": e} for p, e in cases]),
      text=True, capture_output=True, timeout=120, cwd=REPO,
      env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "SKYPILOT_DISABLE_USAGE_COLLECTION": "1", "SKYPILOT_DEBUG": "0"})
  assert res.returncode == 0, res.stderr[-3000:]
  out = json.loads(res.stdout.strip().splitlines()[-1])
  assert out["network_attempts"] == [], out["network_attempts"]
  n = len(YAMLS)
  out["parsed"] = dict(zip(YAMLS, out["cases"][:n]))
  out["unset"] = dict(zip(YAMLS, out["cases"][n:2 * n]))
  out["bad_type"], out["bad_key"] = out["cases"][2 * n:]
  return out


def slice_of(parsed: dict) -> tpu_vm.Slice:
  (acc,) = parsed["accelerators"]
  assert acc.startswith("tpu-"), acc
  return tpu_vm.parse_tpu_type(acc[len("tpu-"):])


@pytest.mark.parametrize("name", YAMLS)
def test_skypilot_reads_the_task_as_a_tpu_vm_slice(sky_parse, name):
  t = sky_parse["parsed"][name]
  assert "error" not in t, t
  slc = slice_of(t)
  assert slc.hosts == YAMLS[name]
  assert t["cloud"] == "GCP" and t["accelerators"] == {f"tpu-{slc.accelerator_type}": 1}
  assert t["accelerator_args"] == {"runtime_version": slc.runtime_version, "tpu_vm": True}
  # A pod slice is one SkyPilot node whose hosts all run setup and run (SKYPILOT_NODE_RANK).
  assert t["num_nodes"] == 1 and t["name"] == "swahili100" and t["workdir"] == "."
  assert t["use_spot"] is False  # `--use-spot` turns it on
  assert t["job_recovery"]["strategy"] in sky_parse["strategies"]
  assert t["job_recovery"]["max_restarts_on_errors"] >= 1
  assert t["storage_mounts"] == [] and not t["file_mounts"]  # gs:// is read by the trainer
  assert t["envs"]["WORKDIR"] == ENV["WORKDIR"] and t["envs"]["OVERRIDES"] == " ".join(OVERRIDES)
  assert os.path.exists(os.path.join(REPO, t["envs"]["CONFIG"]))
  assert "swahili100 train" in t["run"] and '--workdir "$WORKDIR"' in t["run"]


@pytest.mark.parametrize("name", YAMLS)
def test_workdir_must_be_given(sky_parse, name):
  assert "WORKDIR" in sky_parse["unset"][name].get("error", ""), sky_parse["unset"][name]


def test_skypilot_schema_refuses_what_it_should(sky_parse):
  """The validation is live: a wrong type in resources and an unknown task key are refused."""
  assert "tpu_vm" in sky_parse["bad_type"].get("error", ""), sky_parse["bad_type"]
  assert "resource" in sky_parse["bad_key"].get("error", ""), sky_parse["bad_key"]


def test_the_two_tasks_differ_only_in_the_accelerator():
  configs = []
  for name in YAMLS:
    with open(yaml_path(name)) as f:
      c = yaml.safe_load(f)
    c["resources"].pop("accelerators")
    configs.append(c)
  assert all(c == configs[0] for c in configs)


def test_setup_is_the_tpu_vm_launchers(sky_parse):
  args = tpu_vm.parse_args(["setup", "--zone", "z"])
  theirs = tpu_vm.setup_script(args)
  ours = sky_parse["parsed"]["tpu_vm.yaml"]["setup"]
  for piece in (f"https://astral.sh/uv/{args.uv_version}/install.sh",
                'UV_UNMANAGED_INSTALL="$HOME/.local/bin"',
                f"python install {args.python_version}",
                f"venv --python {args.python_version} .venv",
                "pip install --python .venv/bin/python -e '.[tpu]'"):
    assert piece in theirs and piece in ours, piece


def stand_ins(folder) -> str:
  """.venv/bin/python and .venv/bin/swahili100 that append their argv to argv.jsonl."""
  log = os.path.join(folder, "argv.jsonl")
  os.makedirs(os.path.join(folder, ".venv", "bin"))
  for exe in ("python", "swahili100"):
    path = os.path.join(folder, ".venv", "bin", exe)
    with open(path, "w") as f:
      f.write(f"#!{sys.executable}\nimport json, sys\n"
              f"argv = [{'.venv/bin/' + exe!r}] + sys.argv[1:]\n"
              f"open({log!r}, 'a').write(json.dumps(argv) + '\\n')\n")
    os.chmod(path, 0o755)
  return log


def run_block(run: str, folder, env: dict) -> tuple[subprocess.CompletedProcess, list]:
  log = os.path.join(folder, "argv.jsonl")
  if os.path.exists(log):
    os.remove(log)
  res = subprocess.run(["bash", "-c", run], cwd=folder, text=True, capture_output=True,
                       timeout=60, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env})
  calls = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
  return res, calls


@pytest.mark.parametrize("name", YAMLS)
def test_every_host_starts_what_tpu_vm_py_starts(sky_parse, name, tmp_path):
  t = sky_parse["parsed"][name]
  slc = slice_of(t)
  stand_ins(tmp_path)
  args = tpu_vm.parse_args(["run", "--zone", "z", "--tpu-type", slc.accelerator_type,
                            "--workdir", ENV["WORKDIR"], "--records", ENV["RECORDS"],
                            "--tokenizer", ENV["TOKENIZER"], "--", *OVERRIDES])
  ips = [f"10.0.0.{i + 2}" for i in range(slc.hosts)]
  coordinator = f"{ips[0]}:{args.coordinator_port}" if slc.hosts > 1 else ""
  check_at = f"{ips[0] if slc.hosts > 1 else '127.0.0.1'}:{args.preflight_port}"
  for i, expected in enumerate(tpu_vm.worker_argvs(args, slc, coordinator)):
    sky_env = {"SKYPILOT_NUM_NODES": str(slc.hosts), "SKYPILOT_NODE_RANK": str(i),
               "SKYPILOT_NODE_IPS": "\n".join(ips)}
    res, calls = run_block(t["run"], tmp_path, {**t["envs"], **sky_env})
    assert res.returncode == 0, res.stderr
    preflight, train = calls
    assert train == expected  # .venv/bin/swahili100 train ..., the same argv as tpu_vm.py's
    theirs = shlex.split(tpu_vm.preflight_script(args, slc, check_at, i).split(" && ", 1)[1])
    for flag in ("--expect-devices", "--expect-local-devices"):  # the slice table's, not here
      k = theirs.index(flag)
      del theirs[k:k + 2]
    assert preflight == theirs


def test_run_refuses_a_local_workdir_and_can_skip_preflight(sky_parse, tmp_path):
  t = sky_parse["parsed"]["tpu_vm.yaml"]
  stand_ins(tmp_path)
  res, calls = run_block(t["run"], tmp_path, {**t["envs"], "WORKDIR": "runs/base"})
  assert res.returncode == 2 and "gs://" in res.stderr and calls == []
  res, calls = run_block(t["run"], tmp_path, {**t["envs"], "PREFLIGHT": "0"})
  assert res.returncode == 0 and [c[:2] for c in calls] == [[".venv/bin/swahili100", "train"]]
