"""KV-cache generation: greedy equals the full-forward rollout; sampling is seeded; CLI."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swahili100 import generate
from swahili100 import model as model_lib
from swahili100 import special_tokens
from test_model import small_config


@pytest.fixture(scope="module")
def model():
  return model_lib.Transformer(small_config(init_std=0.5), rngs=nnx.Rngs(4))


def test_greedy_equals_full_forward_rollout(model):
  prompt = [5, 17, 42, 8]
  got = generate.generate_ids(model, prompt, 10, temperature=0.0, eos_id=None)
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t))
  seq = list(prompt)
  for _ in range(10):  # causal: zero padding after the sequence does not change its logits
    padded = jnp.asarray([seq + [0] * (14 - len(seq))], jnp.int32)
    seq.append(int(jnp.argmax(forward(state, padded)[0, len(seq) - 1])))
  assert got == seq[len(prompt):]
  assert len(set(got)) > 1  # a real rollout, not one repeated token


def test_sampling_is_seeded(model):
  args = dict(max_new_tokens=12, temperature=1.5, top_p=0.95, eos_id=None)
  a = generate.generate_ids(model, [3, 4], seed=1, **args)
  assert a == generate.generate_ids(model, [3, 4], seed=1, **args)
  assert a != generate.generate_ids(model, [3, 4], seed=2, **args)
  greedy = generate.generate_ids(model, [3, 4], 12, temperature=0.0, eos_id=None)
  assert a != greedy
  # a nucleus this small keeps only the most likely token: sampling becomes greedy
  assert generate.generate_ids(model, [3, 4], 12, temperature=1.0, top_p=1e-6, seed=7,
                               eos_id=None) == greedy


def test_top_p_keeps_only_the_nucleus():
  logits = jnp.log(jnp.asarray([0.05, 0.5, 0.15, 0.3]))
  keys = jax.random.split(jax.random.key(0), 400)
  draws = np.asarray(jax.vmap(lambda k: generate.sample_token(logits, k, 1.0, 0.7))(keys))
  assert set(draws.tolist()) == {1, 3}  # 0.5 + 0.3 reaches 0.7; 0.15 and 0.05 never drawn
  wide = np.asarray(jax.vmap(lambda k: generate.sample_token(logits, k, 1.0, 1.0))(keys))
  assert set(wide.tolist()) == {0, 1, 2, 3}
  assert int(generate.sample_token(logits, keys[0], 0.0, 0.5)) == 1


def test_stops_at_endoftext():
  m = model_lib.Transformer(small_config(tie_embeddings=False), rngs=nnx.Rngs(0))
  m.lm_head.kernel[...] = jnp.zeros_like(m.lm_head.kernel[...])  # all logits tie: argmax is id 0
  assert special_tokens.EOS_ID == 0
  assert generate.generate_ids(m, [5, 6], 20, temperature=0.0) == [special_tokens.EOS_ID]


def test_stops_at_end_of_turn_and_at_given_ids():
  m = model_lib.Transformer(small_config(tie_embeddings=True), rngs=nnx.Rngs(0))
  for layer in m.layers:  # blocks add nothing: the final hidden state is the embedding's
    layer.attn.o_proj.kernel[...] = jnp.zeros_like(layer.attn.o_proj.kernel[...])
    layer.mlp.down_proj.kernel[...] = jnp.zeros_like(layer.mlp.down_proj.kernel[...])
  # every token embeds to (1, 0, ...) except <|end|> at (2, 0, ...): the tied head's argmax is <|end|>
  emb = jnp.zeros_like(m.embed.embedding[...]).at[:, 0].set(1.0)
  m.embed.embedding[...] = emb.at[special_tokens.END_ID, 0].set(2.0)
  assert generate.generate_ids(m, [5, 7], 20, temperature=0.0) == [special_tokens.END_ID]
  only_eos = generate.generate_ids(m, [5, 7], 20, temperature=0.0, eos_id=special_tokens.EOS_ID)
  assert only_eos == [special_tokens.END_ID] * 20


# The CLI on a real trained checkpoint: tests/test_train.py::test_load_model_and_generate_cli_*.
