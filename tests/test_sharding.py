"""Mesh construction errors, sharding rules, and sharded forward == unsharded (8 fake devices)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest
from jax.sharding import PartitionSpec as P

from configs.debug import get_config
from swahili100 import config_lib, distributed, sharding

from conftest import xla_flags

REPO = Path(__file__).resolve().parents[1]


def mesh_cfg(data, fsdp, tensor):
  c = get_config().mesh
  c.data, c.fsdp, c.tensor = data, fsdp, tensor
  return c


def test_mesh_shape_resolves_minus_one():
  assert sharding.mesh_shape(mesh_cfg(-1, 2, 2), 8) == (2, 2, 2)
  assert sharding.mesh_shape(mesh_cfg(1, -1, 2), 8) == (1, 4, 2)
  mesh = sharding.make_mesh(get_config().mesh)  # data=-1 on this process's devices
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert mesh.shape["data"] == jax.device_count()
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_mesh_errors_name_the_keys():
  with pytest.raises(ValueError, match=r"config.mesh.data=2.*jax.device_count\(\) is 8"):
    sharding.mesh_shape(mesh_cfg(2, 2, 1), 8)
  with pytest.raises(ValueError, match="at most one mesh axis may be -1"):
    sharding.mesh_shape(mesh_cfg(-1, -1, 1), 8)
  with pytest.raises(ValueError, match="does not divide the 8 devices"):
    sharding.mesh_shape(mesh_cfg(-1, 3, 1), 8)
  with pytest.raises(ValueError, match="jax.device_count"):
    sharding.make_mesh(mesh_cfg(jax.device_count() + 1, 1, 1))


def test_check_batch():
  mesh = sharding.make_mesh(mesh_cfg(-1, 1, 1))
  sharding.check_batch(4 * jax.device_count(), mesh)
  fake = type("FakeMesh", (), {"shape": {"data": 2, "fsdp": 2, "tensor": 2}})()
  with pytest.raises(ValueError, match=r"config.data.batch_size=6 must divide by .* = 4"):
    sharding.check_batch(6, fake)


def test_rules_fall_back_to_replication_on_non_dividing_dims():
  mesh = type("FakeMesh", (), {"shape": {"data": 1, "fsdp": 4, "tensor": 3}})()
  assert sharding.spec_for(("layers", 0, "attn", "q_proj", "kernel"), (128, 96), mesh) == \
      P("fsdp", "tensor")
  assert sharding.spec_for(("layers", 0, "attn", "k_proj", "kernel"), (128, 64), mesh) == \
      P("fsdp", None)
  assert sharding.spec_for(("layers", 0, "mlp", "down_proj", "kernel"), (96, 130), mesh) == \
      P("tensor", None)
  assert sharding.spec_for(("embed", "embedding"), (2048, 128), mesh) == P("fsdp", None)
  assert sharding.spec_for(("embed", "embedding"), (2050, 128), mesh) == P(None, None)
  assert sharding.spec_for(("final_norm", "scale"), (128,), mesh) == P()
  assert sharding.spec_for(("something", "new"), (128, 128), mesh) == P()


def test_distributed_is_off_on_a_plain_host_and_checks_explicit_settings(monkeypatch):
  for k in ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "MEGASCALE_COORDINATOR_ADDRESS",
            "TPU_WORKER_HOSTNAMES", "SLURM_NTASKS"):
    monkeypatch.delenv(k, raising=False)
  assert distributed.initialize(get_config().mesh) is False
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")  # a single-host TPU VM
  assert distributed.initialize(get_config().mesh) is False
  mesh = get_config().mesh
  mesh.update(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2)
  with pytest.raises(config_lib.ConfigError, match="give all three"):
    distributed.initialize(mesh)


SHARDED_FORWARD = textwrap.dedent("""
  import json
  import jax, jax.numpy as jnp, numpy as np
  from flax import nnx
  from configs.debug import get_config
  from swahili100 import model as model_lib, sharding
  assert jax.device_count() == 8
  cfg = get_config()
  cfg.model.update(vocab_size=256, d_model=32, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64,
                   tie_embeddings=False, init_std=0.2)
  m = model_lib.Transformer(cfg.model, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(m, nnx.Param)
  tok = np.random.RandomState(0).randint(0, 256, (8, 16)).astype(np.int32)
  forward = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))
  ref = np.asarray(forward(params, jnp.asarray(tok)))

  def loss_fn(p, t):
    logp = jax.nn.log_softmax(nnx.merge(graphdef, p)(t[:, :-1]))
    return -jnp.take_along_axis(logp, t[:, 1:, None], -1).mean()

  grad_fn = jax.jit(jax.value_and_grad(loss_fn))
  ref_loss, ref_grads = grad_fn(params, jnp.asarray(tok))
  out = {}
  for shape in [(8, 1, 1), (2, 2, 2), (1, 4, 2)]:
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = shape
    mesh = sharding.make_mesh(cfg.mesh)
    sharding.check_batch(8, mesh)
    p = jax.device_put(params, sharding.param_shardings(params, mesh))
    batch = sharding.shard_batch({"tokens": tok}, mesh)
    logits = forward(p, batch["tokens"])
    loss, grads = grad_fn(p, batch["tokens"])
    grad_err = max(float(jnp.abs(a - b).max())
                   for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)))
    q = p["layers"][0]["attn"]["q_proj"]["kernel"][...]
    out[str(shape)] = {
        "err": float(np.abs(np.asarray(logits) - ref).max()),
        "loss_err": abs(float(loss) - float(ref_loss)), "grad_err": grad_err,
        "q_spec": [str(a) for a in q.sharding.spec],
        "q_shard": list(q.addressable_shards[0].data.shape),
        "emb_spec": [str(a) for a in p["embed"]["embedding"][...].sharding.spec],
        "batch_spec": str(batch["tokens"].sharding.spec),
        "logits_spec": str(logits.sharding.spec)}
  # splash (Pallas interpreter on CPU) under jax.set_mesh: shard_map over the batch axes
  from swahili100 import attention as attention_lib
  rs = np.random.RandomState(1)
  q, k, v = (jnp.asarray(rs.randn(8, 128, n, 16).astype(np.float32)) for n in (4, 2, 2))
  seg = jnp.asarray(np.repeat([[1] * 50 + [2] * 78], 8, 0), jnp.int32)
  ref = attention_lib.reference_attention(q, k, v, attention_lib.causal_segment_mask(seg, 128))
  with jax.set_mesh(mesh):
    fn = lambda q: attention_lib._splash_attention(q, k, v, seg, interpret=True)
    out["splash_err"] = float(np.abs(np.asarray(jax.jit(fn)(q)) - np.asarray(ref)).max())
    out["splash_shard_map"] = "shard_map" in str(jax.make_jaxpr(fn)(q))
  print("RESULT" + json.dumps(out))
""")


def test_sharded_forward_and_gradients_match_unsharded_on_8_devices():
  env = dict(os.environ, XLA_FLAGS=xla_flags(8),
             JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, "-c", SHARDED_FORWARD], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][0]
  res = json.loads(line[len("RESULT"):])
  assert res.pop("splash_err") < 1e-5 and res.pop("splash_shard_map")
  for shape, r in res.items():
    assert r["err"] < 1e-5 and r["loss_err"] < 1e-5 and r["grad_err"] < 1e-6, (shape, r)
    assert r["batch_spec"] == "P(('data', 'fsdp'), None)"
  assert res["(8, 1, 1)"]["q_shard"] == [32, 32]  # fsdp = tensor = 1: whole kernel per device
  assert res["(2, 2, 2)"]["q_spec"] == ["fsdp", "tensor"]
  assert res["(2, 2, 2)"]["q_shard"] == [16, 16]
  assert res["(1, 4, 2)"]["q_shard"] == [8, 16]
  assert res["(1, 4, 2)"]["emb_spec"] == ["fsdp", "None"]
