"""int4/int8 weight-only quantization: packing, error bounds, save/load, the CLI and its budget."""

import json
import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from swahili100 import checkpoint, generate
from swahili100.export import quantize
from tests.test_export_hf import export_config, random_model


def test_pack_unpack_roundtrip():
  q = np.random.RandomState(0).randint(0, 16, (64, 5)).astype(np.uint8)
  packed = quantize.pack_int4(q)
  assert packed.shape == (32, 5) and packed.dtype == np.uint8
  np.testing.assert_array_equal(quantize.unpack_int4(packed), q)
  np.testing.assert_array_equal(np.asarray(quantize.unpack_int4(jnp.asarray(packed))), q)


@pytest.mark.parametrize("bits,method", [(4, "rtn"), (4, "mse"), (8, "rtn")])
def test_dequantized_kernel_error_is_within_half_a_step(bits, method):
  w = np.random.RandomState(1).randn(128, 48).astype(np.float32)
  lin = quantize.QuantLinear.from_kernel(w, bits, 64, method)
  deq = np.asarray(lin.dequantized_kernel())
  step = np.repeat(np.asarray(lin.scale[...]), 64, axis=0)  # [K, N] scale per element
  err = np.abs(deq - w)
  if method == "rtn":  # no clipping: every weight within half a quantization step
    assert (err <= step / 2 + 1e-6).all()
  rel = np.linalg.norm(deq - w) / np.linalg.norm(w)
  assert 0 < rel < (0.1 if bits == 4 else 0.01)
  x = np.random.RandomState(2).randn(3, 128).astype(np.float32)
  np.testing.assert_allclose(np.asarray(lin(jnp.asarray(x))), x @ deq, atol=1e-4)


def test_mse_clip_search_never_worse_than_rtn():
  w = np.random.RandomState(3).standard_t(3, (256, 64)).astype(np.float32)  # heavy tails
  errs = {m: np.linalg.norm(np.asarray(quantize.QuantLinear.from_kernel(w, 4, 64, m)
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
  # budget on this random model (trained-model figures: docs/notes/export-benchmarks.md)
  assert report["before"]["tokens"] > 0 and report["before"]["bpb"] > 0
  assert abs(report["bpb_increase_pct"]) < 3.0
  assert report["quant_weight_bytes"] < 0.6 * report["float_weight_bytes"]

  qconfig, qmodel = checkpoint.load_model(out)  # dispatches on the `quant` block
  assert qconfig.quant.bits == 4 and qconfig.quant.group_size == 64
  assert isinstance(qmodel.layers[1].mlp.down_proj, quantize.QuantLinear)
  assert isinstance(qmodel.lm_head, quantize.QuantLinear)
  assert qmodel.layers[0].attn.q_proj.qweight[...].dtype == jnp.uint8
  assert qmodel.layers[0].attn.q_proj.qweight[...].shape == (config.model.d_model // 2,
                                                             4 * config.model.head_dim)
  after = quantize.eval_loss_bpb(qmodel, qconfig, 2)
  assert after["bpb"] == pytest.approx(report["after"]["bpb"], rel=1e-5)
  ids = generate.generate_ids(qmodel, [2, 30, 31], 8, eos_id=None)
  assert len(ids) == 8 and all(0 <= i < config.model.vocab_size for i in ids)
