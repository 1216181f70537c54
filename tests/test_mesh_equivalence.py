"""Sharded training equals one-device training: meshes (8,1,1), (2,2,2), (1,4,2) on 8 CPU devices."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = r"""
import json, sys
sys.path.insert(0, {tests!r})
from conftest import tiny_config
from swahili100 import train
records, tok, vocab, root, meshes = json.loads(sys.argv[1])
out = {{}}
for mesh in meshes:
  workdir = f"{{root}}/{{'x'.join(map(str, mesh))}}"
  c = tiny_config(records, tok, vocab, **{{"mesh.data": mesh[0], "mesh.fsdp": mesh[1],
      "mesh.tensor": mesh[2], "train.num_steps": 5, "train.checkpoint_every": 100,
      "model.tie_embeddings": "false"}})
  assert train.run(c, workdir) == 0
  rows = [json.loads(l) for l in open(workdir + "/logs/training.jsonl")]
  out["x".join(map(str, mesh))] = [r["loss"] for r in rows if "loss" in r]
print("LOSSES" + json.dumps(out))
"""


def _run(args, devices):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  code = SCRIPT.format(tests=str(REPO / "tests"))
  p = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  line = [l for l in p.stdout.splitlines() if l.startswith("LOSSES")][0]
  return json.loads(line[len("LOSSES"):])


@pytest.mark.slow
def test_meshes_give_the_same_losses_as_one_device(tiny_records, tmp_path):
  records_dir, tok, vocab = tiny_records
  one = _run([records_dir, tok, vocab, str(tmp_path / "one"), [[1, 1, 1]]], 1)["1x1x1"]
  many = _run([records_dir, tok, vocab, str(tmp_path / "eight"),
               [[8, 1, 1], [2, 2, 2], [1, 4, 2]]], 8)
  assert len(one) == 5
  for mesh, losses in many.items():
    assert losses == pytest.approx(one, abs=1e-5), mesh
