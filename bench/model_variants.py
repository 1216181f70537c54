"""Model ablations: forward+backward time of model variants vs torch LlamaForCausalLM, interleaved.

    flock /tmp/swahili100-bench.lock env V=2048 TIE=1 REPS=12 \
      VARIANTS="{'nocustom,chunks1': {'CUSTOM_MATMUL_GRADS': False, 'A.CAUSAL_CHUNKS': 1}, 'default': {}}" \
      .venv/bin/python bench/model_variants.py

VARIANTS maps a name to module switches of swahili100.model (or `A.<name>` for attention) to
flip while that variant is built. Prints each variant's median time and its speed vs torch.
"""
import ast
import sys, time, os; sys.path.insert(0, '.')  # run from the repo root
import numpy as np, jax, jax.numpy as jnp, optax, torch, transformers
from flax import nnx
from configs.debug import get_config
from swahili100 import model as M
A = M.attention_lib
V = int(os.environ.get('V', 2048)); B, T = 8, 256; REPS = int(os.environ.get('REPS', 10))
TIE = os.environ.get('TIE', '1') == '1'
cfg = get_config().model
cfg.update(vocab_size=V, d_model=256, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=64, mlp_dim=768,
           tie_embeddings=TIE, dtype='float32')
torch.set_num_threads(2)
tok = np.random.RandomState(0).randint(0, V, (B, T + 1)); jtok = jnp.asarray(tok)
VARIANTS = ast.literal_eval(os.environ.get('VARIANTS', "{'default': {}}"))
steps = {}
for name, settings in VARIANTS.items():
  saved = {}
  for k, v in settings.items():
    if k == 'remat': continue
    mod, attr = (A, k[2:]) if k.startswith('A.') else (M, k)
    saved[(mod, attr)] = getattr(mod, attr); setattr(mod, attr, v)
  c = cfg.copy_and_resolve_references(); c.remat = settings.get('remat', 'none')
  m = M.Transformer(c, rngs=nnx.Rngs(0))
  g, p = nnx.split(m, nnx.Param)
  def loss(p, tok, g=g):
    logits = nnx.merge(g, p)(tok[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tok[:, 1:]).mean()
  f = jax.jit(jax.value_and_grad(loss)).lower(p, jtok).compile()
  steps[name] = (f, p)
  for (mod, attr), v in saved.items(): setattr(mod, attr, v)
hc = transformers.LlamaConfig(vocab_size=V, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
  num_attention_heads=4, num_key_value_heads=2, head_dim=64, tie_word_embeddings=TIE)
hf = transformers.LlamaForCausalLM(hc); ttok = torch.tensor(tok)
def tstep():
  hf.zero_grad(set_to_none=True)
  out = hf(ttok[:, :-1]).logits
  torch.nn.functional.cross_entropy(out.reshape(-1, V), ttok[:, 1:].reshape(-1)).backward()
fns = {'torch': tstep}
for name, (f, p) in steps.items():
  fns[name] = (lambda f=f, p=p: jax.block_until_ready(f(p, jtok)))
for f in fns.values(): f(); f()
times = {k: [] for k in fns}
for _ in range(REPS):
  for k, f in fns.items():
    t0 = time.perf_counter(); f(); times[k].append(time.perf_counter() - t0)
tm = np.median(times['torch'])
print(f"V={V} tie={TIE} B={B} T={T} d=256 L=4 H=4 K=2 F=768 fp32, median of {REPS}: torch {tm*1e3:.1f} ms")
for k in steps:
  print(f"  {k:<28} {np.median(times[k])*1e3:7.1f} ms   speed vs torch {tm/np.median(times[k]):.2f}x")
