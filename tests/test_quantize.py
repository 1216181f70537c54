"""int4/int8 weight-only quantization: packing, error bounds, save/load, the CLI and its budget."""

import json
import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from swahili100 import checkpoint, evaluate, generate, inference, quantized
from swahili100.evals import bpb
from swahili100.export import quantize
from tests.test_export_hf import export_config, random_model


def test_pack_unpack_roundtrip():
  q = np.random.RandomState(0).randint(0, 16, (64, 5)).astype(np.uint8)
  packed = quantized.pack_int4(q)
  assert packed.shape == (32, 5) and packed.dtype == np.uint8
  np.testing.assert_array_equal(quantized.unpack_int4(packed), q)
  np.testing.assert_array_equal(np.asarray(quantized.unpack_int4(jnp.asarray(packed))), q)


@pytest.mark.parametrize("bits,method", [(4, "rtn"), (4, "mse"), (8, "rtn")])
def test_dequantized_kernel_error_is_within_half_a_step(bits, method):
  w = np.random.RandomState(1).randn(128, 48).astype(np.float32)
  lin = quantize.quantize_linear(w, bits, 64, method)
  deq = np.asarray(lin.dequantized_kernel())
  step = np.repeat(np.asarray(lin.scale[...]), 64, axis=0)  # [I, O] scale per element
  err = np.abs(deq - w)
  if method == "rtn":  # no clipping: every weight within half a quantization step
    assert (err <= step / 2 + 1e-6).all()
  rel = np.linalg.norm(deq - w) / np.linalg.norm(w)
  assert 0 < rel < (0.1 if bits == 4 else 0.01)
  x = np.random.RandomState(2).randn(3, 128).astype(np.float32)
  np.testing.assert_allclose(np.asarray(lin(jnp.asarray(x))), x @ deq, atol=1e-4)


def test_mse_clip_search_never_worse_than_rtn():
  w = np.random.RandomState(3).standard_t(3, (256, 64)).astype(np.float32)  # heavy tails
  errs = {m: np.linalg.norm(np.asarray(quantize.quantize_linear(w, 4, 64, m)
                                       .dequantized_kernel()) - w) for m in ("rtn", "mse")}
  assert errs["mse"] < errs["rtn"]


def _write_run(config, model, workdir):
  """A run folder as `swahili100 train` leaves it: config.json + checkpoints/<step>/params."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json())
  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  mngr.save(7, args=ocp.args.Composite(params=ocp.args.StandardSave(nnx.state(model, nnx.Param))))
  mngr.wait_until_finished()
  mngr.close()


def test_quantize_cli_report_load_and_generate(tiny_records, tmp_path, capsys):
  config = export_config(tiny_records, **{"model.tie_embeddings": False})
  model = random_model(config, scale=2.0)
  workdir = str(tmp_path / "run")
  _write_run(config, model, workdir)
  out = str(tmp_path / "int4")
  rc = quantize.main(["--checkpoint", f"{workdir}/checkpoints/7", "--precision", "int4",
                      "--group-size", "64", "--output", out, "--eval-batches", "2",
                      "--quantize-lm-head"])
  assert rc == 0
  report = json.load(open(os.path.join(out, quantize.REPORT)))
  # budget on this random model (trained-model figures: docs/benchmarks.md)
  assert report["before"]["tokens"] > 0 and report["before"]["bpb"] > 0
  assert abs(report["bpb_increase_pct"]) < 3.0
  assert report["quant_weight_bytes"] < 0.6 * report["float_weight_bytes"]

  qconfig, qmodel = inference.load(out)  # dispatches on the `quant` block
  assert quantized.is_quantized(out) and not quantized.is_quantized(workdir)
  with pytest.raises(checkpoint.CheckpointError, match="not a training run"):
    checkpoint.load_params(out, None)   # a training-only loader refuses it, by name
  assert qconfig.quant.bits == 4 and qconfig.quant.group_size == 64
  assert isinstance(qmodel.layers[1].mlp.down_proj, quantized.QuantLinear)
  assert isinstance(qmodel.lm_head, quantized.QuantLinear)
  assert qmodel.layers[0].attn.q_proj.qweight[...].dtype == jnp.uint8
  assert qmodel.layers[0].attn.q_proj.qweight[...].shape == (config.model.d_model // 2,
                                                             4 * config.model.head_dim)
  after = bpb.model_bpb(qmodel, qconfig, max_batches=2)
  assert after["bpb"] == pytest.approx(report["after"]["bpb"], rel=1e-5)
  ids = generate.generate_ids(qmodel, [2, 30, 31], 8, eos_id=None)
  assert len(ids) == 8 and all(0 <= i < config.model.vocab_size for i in ids)
  # the CLIs run the quantized folder directly (inference.load dispatch)
  capsys.readouterr()
  assert evaluate.main(["--checkpoint", out, "--tasks", "bpb", "--max-batches", "2",
                        "--output", str(tmp_path / "eval.json")]) == 0
  ev = json.load(open(tmp_path / "eval.json"))
  capsys.readouterr()
  assert ev["tasks"]["bpb"]["bpb"] == pytest.approx(report["after"]["bpb"], rel=1e-4)
  assert generate.main(["--checkpoint", out, "--prompt", "Habari za asubuhi", "--temperature",
                        "0", "--max-new-tokens", "6"]) == 0
  text = capsys.readouterr().out
  assert text.startswith("Habari za asubuhi") and len(text.strip()) > len("Habari za asubuhi")
  # exporting the int4 folder writes its dequantized weights: HF == the int4 JAX model
  transformers = pytest.importorskip("transformers")
  from swahili100.export import main as export_main
  from tests.test_export_hf import torch_logits
  assert export_main.main(["--checkpoint", out, "--format", "hf", "--output",
                           str(tmp_path / "hf")]) == 0
  card = (tmp_path / "hf" / "README.md").read_text()
  assert "dequantized int4 (group size 64, method mse)" in card
  assert "Exported checkpoint: step 7." in card
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
  ids_BT = np.random.RandomState(5).randint(0, config.model.vocab_size, (2, 19))
  want = np.asarray(qmodel(jnp.asarray(ids_BT)))
  np.testing.assert_allclose(torch_logits(hf_model, ids_BT), want, atol=1e-4, rtol=0)


def test_gptq_lowers_output_error_on_correlated_inputs():
  """GPTQ minimises ||X (W_q - W)||, not ||W_q - W||: with correlated inputs it beats RTN."""
  rng = np.random.RandomState(4)
  X = rng.randn(512, 16) @ rng.randn(16, 128) + 0.1 * rng.randn(512, 128)  # low-rank + noise
  w = rng.randn(128, 32).astype(np.float32)
  H = X.T @ X / len(X)
  out_err = {}
  for method in ("rtn", "gptq"):
    if method == "gptq":
      q, scale, zero = quantize.quantize_kernel_gptq(w, H, 4, 64, grid="rtn")
    else:
      q, scale, zero = quantize.quantize_kernel(w, 4, 64, "rtn")
    deq = np.asarray(quantized.QuantLinear(quantized.pack_int4(q), scale, zero, 4, 64)
                     .dequantized_kernel())
    out_err[method] = np.linalg.norm(X @ (deq - w))
  assert out_err["gptq"] < 0.8 * out_err["rtn"]


def test_gptq_model_calibrates_on_training_batches(tiny_records):
  config = export_config(tiny_records)
  model = random_model(config, scale=2.0)
  ids = jnp.asarray(np.random.RandomState(0).randint(0, config.model.vocab_size, (2, 16)))
  want = np.asarray(model(ids))
  quantize.quantize_model(model, 8, 64, "gptq", calib_batches=quantize.train_batches(config, 2))
  assert isinstance(model.layers[0].attn.q_proj, quantized.QuantLinear)
  got = np.asarray(model(ids))
  assert 0 < np.abs(got - want).max() < 0.05 * np.abs(want).max()
