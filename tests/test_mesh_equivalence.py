"""Sharded training equals one-device training: mesh (2,2,2) (data, fsdp and tensor all split) on
8 CPU devices for pretraining, SFT and DPO from the same base checkpoint (the one engine), with
AdamW and with Muon (Newton-Schulz on fsdp/tensor-sharded matrices)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, xla_flags

SCRIPT = r"""
import json, sys
sys.path.insert(0, {tests!r})
from conftest import tiny_config
from swahili100 import train
from swahili100.align import main as align
records, tok, vocab, root, meshes, base, align_meshes = json.loads(sys.argv[1])
out = {{}}
def losses(workdir):
  rows = [json.loads(l) for l in open(workdir + "/logs/training.jsonl")]
  return [r["loss"] for r in rows if "loss" in r]
MUON = {{"optim.name": "muon", "optim.muon_lr": "0.05", "model.qk_norm": "true"}}
for mesh in meshes:
  for opt, extra in (("", {{}}), ("muon ", MUON)):
    name = opt + "x".join(map(str, mesh))
    c = tiny_config(records, tok, vocab, **{{"mesh.data": mesh[0], "mesh.fsdp": mesh[1],
        "mesh.tensor": mesh[2], "train.num_steps": 5, "train.checkpoint_every": 100,
        "model.tie_embeddings": "false", **extra}})
    assert train.run(c, f"{{root}}/{{name}}") == 0
    out[name] = losses(f"{{root}}/{{name}}")
for mesh in align_meshes:  # SFT and DPO of one base checkpoint, on this mesh
  name = "x".join(map(str, mesh))
  flags = [f"--config.mesh.{{a}}={{n}}" for a, n in zip(("data", "fsdp", "tensor"), mesh)]
  for stage, opt in (("sft", []), ("dpo", []), ("dpo", ["--config.optim.name=muon"])):
    tag = f"{{stage}}{{' muon' if opt else ''}}"
    workdir = f"{{root}}/{{tag.replace(' ', '-')}}-{{name}}"
    assert align.main(["--stage", stage, "--checkpoint", base, "--workdir", workdir,
                       "--steps", "6", "--lr", "1e-3", *flags, *opt]) == 0
    out[f"{{tag}} {{name}}"] = losses(workdir)
print("LOSSES" + json.dumps(out))
"""


def _run(args, devices):
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices),
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
  base = str(tmp_path / "one" / "1x1x1")  # the one-device pretraining run: SFT/DPO's base
  one = _run([records_dir, tok, vocab, str(tmp_path / "one"), [[1, 1, 1]], base, [[1, 1, 1]]],
             1)
  many = _run([records_dir, tok, vocab, str(tmp_path / "eight"),
               [[2, 2, 2]], base, [[2, 2, 2]]], 8)
  assert len(one["1x1x1"]) == 5 and len(one["sft 1x1x1"]) == len(one["dpo 1x1x1"]) == 6
  assert sorted(many) == ["2x2x2", "dpo 2x2x2", "dpo muon 2x2x2", "muon 2x2x2", "sft 2x2x2"]
  assert abs(one["muon 1x1x1"][-1] - one["1x1x1"][-1]) > 1e-3  # Muon is not AdamW
  assert one["dpo muon 1x1x1"] != one["dpo 1x1x1"]
  for name, losses in many.items():
    assert losses == pytest.approx(one[name.replace("2x2x2", "1x1x1")], abs=1e-5), name
