"""The optimizers: which parameters Muon gets, what one update does, and Muon through the engine
(not a no-op, gradient accumulation exact, bit-exact resume after SIGTERM and SIGKILL)."""

import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
import optax
from optax import contrib

from configs import debug
from swahili100 import optim, train
from swahili100 import model as model_lib

from conftest import REPO, tiny_config, tiny_flags
from tests.test_train import _wait_for

MUON = {"optim.name": "muon", "optim.muon_lr": 0.02, "optim.lr": 3e-3, "optim.embed_lr": 0.01,
        "optim.head_lr": 0.002}


def _optim_cfg(**kw):
  o = debug.get_config().optim
  o.update({"name": "muon", "warmup_steps": 1, "grad_clip": 1e9, **kw})
  return o


def _params(tie=False):
  c = debug.get_config().model
  c.update(vocab_size=64, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
           mlp_dim=48, tie_embeddings=tie, qk_norm=True)
  return nnx.split(model_lib.Transformer(c, rngs=nnx.Rngs(0)), nnx.Param)[1]


def _flat(tree):
  """{'layers/0/attn/q_proj/kernel': leaf} (nnx.Variable's own 'value' level dropped)."""
  out = {}
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    out["/".join(n for n in names if n != "value")] = x
  return out


def test_muon_gets_the_hidden_matrices_only():
  groups = _flat(optim.groups(_params()))
  hidden = sorted(k for k, g in groups.items() if g == "hidden")
  assert len(hidden) == 2 * 7 and all(k.endswith("kernel") and "_proj" in k for k in hidden)
  assert groups["embed/embedding"] == "embed"
  assert groups["lm_head/kernel"] == "head"
  assert {g for k, g in groups.items() if "norm" in k} == {"other"}  # incl. q_norm, k_norm [H]
  # the momentum Muon keeps exists for exactly those matrices (the state a checkpoint carries)
  tx, _ = optim.make(_optim_cfg(), 10)
  state = tx.init(_params())
  muon_states = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(
      x, contrib.MuonState)) if isinstance(s, contrib.MuonState)]
  assert len(muon_states) == 1
  mu = [x for x in jax.tree.leaves(muon_states[0].mu) if hasattr(x, "shape")]
  assert len(mu) == len(hidden)


def test_first_update_is_orthogonal_for_matrices_and_adam_for_the_rest():
  """Step 1 (lr at peak after 1 warmup step): a hidden matrix moves by muon_lr times an
  orthogonalised matrix (singular values ~1, x sqrt(out/in) when wider); the embedding, head
  and norms move by their AdamW lr times sign(gradient)."""
  params = _params()
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape), params)
  o = _optim_cfg(lr=3e-3, embed_lr=0.01, head_lr=0.002, muon_lr=0.02, weight_decay=0.0)
  tx, _ = optim.make(o, 10)
  update = jax.jit(tx.update)   # Newton-Schulz op by op would take ~20 s
  state = tx.init(params)
  _, state = update(grads, state, params)  # step 0: lr 0 (warmup)
  updates, _ = update(grads, state, params)
  u, g = _flat(updates), _flat(grads)
  sv = np.linalg.svd(np.asarray(u["layers/0/attn/q_proj/kernel"]), compute_uv=False)
  assert np.all(sv > 0.02 * 0.5) and np.all(sv < 0.02 * 1.3)  # NS5 leaves sv in ~[0.7, 1.2]
  sv_up = np.linalg.svd(np.asarray(u["layers/0/mlp/up_proj/kernel"]), compute_uv=False)
  assert np.median(sv_up) == pytest.approx(0.02 * np.sqrt(48 / 32), rel=0.3)
  for key, lr in (("embed/embedding", 0.01), ("lm_head/kernel", 0.002),
                  ("layers/1/attn/q_norm/scale", 3e-3)):
    np.testing.assert_allclose(np.asarray(u[key]), -lr * np.sign(np.asarray(g[key])), rtol=1e-3)


def test_optax_default_would_take_the_embedding():
  """The trap the split avoids: optax's muon alone labels every 2-D parameter, [V, D] too."""
  params = _params(tie=True)
  state = contrib.muon(0.02).init(params)
  inner = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, contrib.MuonState))
           if isinstance(s, contrib.MuonState)][0]
  assert "embed/embedding" in _flat(inner.mu)
  ours = optim.make(_optim_cfg(), 10)[0].init(params)
  ours_mu = [s for s in jax.tree.leaves(ours, is_leaf=lambda x: isinstance(x, contrib.MuonState))
             if isinstance(s, contrib.MuonState)][0].mu
  assert not any(k.startswith("embed") and hasattr(v, "shape") for k, v in _flat(ours_mu).items())


def _losses(workdir):
  with open(os.path.join(workdir, "logs", "training.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def muon12(tiny_records, tmp_path_factory):
  root = tmp_path_factory.mktemp("muon")
  runs = {}
  for name, extra in (("muon", MUON), ("adamw", {})):
    config = tiny_config(*tiny_records, **{"train.num_steps": 12, "train.checkpoint_every": 6,
                                           "train.keep_last": 5, **extra})
    assert train.run(config, str(root / name)) == 0
    runs[name] = str(root / name)
  return runs


def test_muon_trains_and_is_recorded(muon12):
  muon, adamw = _losses(muon12["muon"]), _losses(muon12["adamw"])
  assert muon[12] < muon[1] - 0.5
  assert abs(muon[12] - adamw[12]) > 1e-3
  saved = json.load(open(os.path.join(muon12["muon"], "config.json")))
  assert saved["optim"]["name"] == "muon" and saved["optim"]["muon_lr"] == 0.02


def test_resuming_with_the_other_optimizer_is_refused(tiny_records, muon12, capsys):
  flags = tiny_flags(*tiny_records, **{"train.num_steps": 14})  # adamw, the default
  assert train.main(["--config", str(REPO / "configs" / "debug.py"), "--workdir",
                     muon12["muon"], *flags]) == 2
  assert "optim.name: saved 'muon', now 'adamw'" in capsys.readouterr().err


def test_muon_grad_accumulation_equals_one_batch(tiny_records, muon12, tmp_path):
  config = tiny_config(*tiny_records, **{"train.num_steps": 12, "train.checkpoint_every": 6,
                                         "optim.grad_accum": 4, **MUON})
  assert train.run(config, str(tmp_path / "accum")) == 0
  want, got = _losses(muon12["muon"]), _losses(str(tmp_path / "accum"))
  assert got == pytest.approx(want, abs=1e-5)


def _train_cmd(records, workdir):
  flags = tiny_flags(*records, **{"train.num_steps": 200, "train.checkpoint_every": 10,
                                  "train.eval_batches": 1, **MUON})
  return [sys.executable, "-m", "swahili100.train", "--config", str(REPO / "configs" / "debug.py"),
          "--workdir", workdir, *flags]


@pytest.fixture(scope="module")
def muon200(tiny_records, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("muon200") / "run")
  done = subprocess.run(_train_cmd(tiny_records, workdir), cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  return _losses(workdir)


def _steps_saved(workdir) -> list[int]:
  ckpts = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(ckpts) if d.isdigit()) if os.path.isdir(ckpts) else []


@pytest.mark.slow
def test_muon_resume_after_sigterm_then_sigkill_is_bit_exact(tiny_records, muon200, tmp_path):
  """SIGTERM once a checkpoint exists, rerun; SIGKILL once the rerun saved a later one, rerun:
  every logged loss equals the uninterrupted Muon run's, so the Muon momentum travels in the
  checkpoint through both kinds of stop."""
  workdir = str(tmp_path / "cut")
  cmd = _train_cmd(tiny_records, workdir)
  for sig, code in ((signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)):
    before = max(_steps_saved(workdir), default=0)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert _wait_for(lambda: max(_steps_saved(workdir), default=0) > before, proc), \
        "the run ended before a checkpoint could be interrupted"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out
    assert max(_losses(workdir)) < 200
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout + done.stderr
  assert "resumed from" in done.stdout
  got = _losses(workdir)
  assert max(got) == 200 and [got[s] for s in sorted(got)] == [muon200[s] for s in sorted(got)]


def test_adamw_takes_the_embedding_and_head_lrs_and_is_unchanged_without_them():
  params = _params()
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape), params)
  plain = _optim_cfg(name="adamw", lr=3e-3, weight_decay=0.0)
  split = _optim_cfg(name="adamw", lr=3e-3, weight_decay=0.0, embed_lr=0.01, head_lr=0.002)
  out = {}
  for tag, o in (("plain", plain), ("split", split)):
    tx, _ = optim.make(o, 10)
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    out[tag] = _flat(tx.update(grads, state, params)[0])
  g = _flat(grads)
  for key, lr in (("embed/embedding", 0.01), ("lm_head/kernel", 0.002),
                  ("layers/0/attn/q_proj/kernel", 3e-3)):
    np.testing.assert_allclose(np.asarray(out["split"][key]),
                               -lr * np.sign(np.asarray(g[key])), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(out["plain"][key]),
                               -3e-3 * np.sign(np.asarray(g[key])), rtol=1e-3)
  # no per-group lr: one plain AdamW, the optimizer state every earlier checkpoint holds
  assert jax.tree.structure(optim.make(plain, 10)[0].init(params)) == jax.tree.structure(
      optax.chain(optax.clip_by_global_norm(1.0),
                  optax.adamw(lambda _: 1e-3, mask=optim.decay_mask)).init(params))
