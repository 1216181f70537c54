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


# ------------------------------------------------------------------ batches, stops, sampling


def test_batch_rows_equal_each_prompt_alone(model):
  """Left padding is masked out of attention: a row's greedy tokens do not depend on the batch."""
  prompts = [[5, 17, 42], [8, 9, 10, 11, 12, 13, 14, 15, 16], list(range(20, 37))]
  batch = generate.generate_batch(model, prompts, 12, eos_id=None)
  assert batch == [generate.generate_ids(model, p, 12, eos_id=None) for p in prompts]
  assert all(len(row) == 12 for row in batch) and len({tuple(r) for r in batch}) == 3


def test_each_row_stops_at_its_own_stop_id(model):
  prompts = [[5, 17, 42, 8], [3, 4]]
  full = generate.generate_batch(model, prompts, 16, eos_id=None)
  k = next(k for k in range(2, 16) if full[0][k] not in full[0][:k])  # row 0's first new id
  stop = full[0][k]
  got = generate.generate_batch(model, prompts, 16, eos_id=stop)
  assert got[0] == full[0][:k + 1]  # row 0 ends with the stop id...
  cut = full[1].index(stop) + 1 if stop in full[1] else 16
  assert got[1] == full[1][:cut]  # ...row 1 goes on to its own end
  assert len(got[1]) > k + 1


def test_stop_strings_end_rows_between_chunks(model):
  prompts = [[5, 17, 42, 8], [3, 4]]
  full = generate.generate_batch(model, prompts, 40, eos_id=None)
  decode = lambda ids: "".join(f"<{i}>" for i in ids)  # noqa: E731
  k = next(k for k in range(3, 16) if full[0][k] not in full[0][:k] + full[1])
  stop = f"<{full[0][k]}>"  # in row 0 only, first at position k
  got = generate.generate_batch(model, prompts, 40, eos_id=None, stop_strings=[stop],
                                decode=decode)
  # row 0 is done at the first check after its stop string (1 + STOP_CHUNK tokens); row 1 is not
  assert got[0] == full[0][:1 + generate.STOP_CHUNK] and got[1] == full[1]
  assert generate.cut_at_stop(decode(got[0]), [stop, "<never>"]) == decode(full[0][:k])
  assert generate.cut_at_stop("abc", []) == "abc"


def test_greedy_loop_runs_once_on_device(model, monkeypatch):
  """All new tokens of a call come from one jitted while_loop, not a Python loop per token."""
  prefill, decode_loop = generate._jitted()
  calls = []
  monkeypatch.setattr(generate, "_jitted", lambda: (prefill, lambda *a: calls.append(1) or
                                                   decode_loop(*a)))
  assert len(generate.generate_ids(model, [3, 4], 40, eos_id=None)) == 40
  assert calls == [1]


def test_top_k_keeps_only_the_k_likeliest():
  logits = jnp.log(jnp.asarray([0.05, 0.5, 0.15, 0.3]))
  keys = jax.random.split(jax.random.key(1), 400)
  draws = np.asarray(jax.vmap(lambda k: generate.sample_token(logits, k, 1.0, 1.0, 2))(keys))
  assert set(draws.tolist()) == {1, 3}
  one = np.asarray(jax.vmap(lambda k: generate.sample_token(logits, k, 5.0, 1.0, 1))(keys))
  assert set(one.tolist()) == {1}
  # top-p acts on the top-k distribution renormalized: of {0.5, 0.3}, 0.5 / 0.8 < 0.7 keeps both
  both = np.asarray(jax.vmap(lambda k: generate.sample_token(logits, k, 1.0, 0.7, 2))(keys))
  assert set(both.tolist()) == {1, 3}


def test_repetition_penalty_is_transformers():
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  rng = np.random.RandomState(0)
  logits_BV = rng.randn(3, 11).astype(np.float32) * 3
  ids_BT = rng.randint(0, 11, (3, 5))
  seen_BV = np.zeros((3, 11), bool)
  seen_BV[np.arange(3)[:, None], ids_BT] = True
  got = np.asarray(generate.penalize(jnp.asarray(logits_BV), jnp.asarray(seen_BV), 1.7))
  want = transformers.RepetitionPenaltyLogitsProcessor(1.7)(torch.as_tensor(ids_BT),
                                                            torch.as_tensor(logits_BV)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert not np.allclose(got, logits_BV)


def test_cli_batches_prompts_from_flags_and_a_file(tiny_records, tmp_path, capsys):
  import orbax.checkpoint as ocp
  from conftest import tiny_config
  config = tiny_config(*tiny_records)
  m = model_lib.Transformer(config.model, rngs=nnx.Rngs(0))
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(config.to_json())
  mngr = ocp.CheckpointManager(str(workdir / "checkpoints"))
  mngr.save(3, args=ocp.args.Composite(params=ocp.args.StandardSave(nnx.state(m, nnx.Param))))
  mngr.wait_until_finished()
  mngr.close()
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("Watoto walicheza\n\nMwalimu aliwafundisha\n")
  assert generate.main(["--checkpoint", str(workdir), "--prompt", "Habari za leo",
                        "--prompts-file", str(prompts), "--max-new-tokens", "5",
                        "--temperature", "0", "--top-k", "3", "--repetition-penalty", "1.3"]) == 0
  blocks = capsys.readouterr().out.rstrip("\n").split("\n---\n")
  assert len(blocks) == 3
  for block, prompt in zip(blocks, ["Habari za leo", "Watoto walicheza", "Mwalimu aliwafundisha"]):
    assert block.startswith(prompt) and len(block) > len(prompt)
  assert generate.main(["--checkpoint", str(workdir)]) == 2
  assert "give --prompt P" in capsys.readouterr().err
