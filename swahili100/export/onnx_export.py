"""Hugging Face Llama folder -> ONNX (`input_ids`, `attention_mask` -> `logits`), optional int4.

    export_onnx(hf_dir, "model.onnx")                 # float32, dynamic batch and sequence
    quantize_int4(onnx_in, onnx_out, block_size=32)   # MatMul -> MatMulNBits (onnxruntime)

Uses the dynamo exporter of `torch.onnx.export` (needs onnxscript); no KV-cache inputs: each
call runs the whole sequence.
"""

import logging
import os

import numpy as np


def _wrapper(hf_model):
  """LlamaForCausalLM -> a module returning logits only (built lazily: torch is an extra)."""
  import torch  # noqa: PLC0415

  class LogitsOnly(torch.nn.Module):

    def __init__(self, m):
      super().__init__()
      self.m = m

    def forward(self, input_ids, attention_mask):
      return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

  return LogitsOnly(hf_model).eval()


def export_onnx(hf_dir: str, out_path: str, example_shape=(2, 16), opset: int = 18) -> str:
  import torch  # noqa: PLC0415
  from transformers import AutoModelForCausalLM  # noqa: PLC0415
  model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
  B, T = example_shape
  ids = torch.randint(0, model.config.vocab_size, (B, T), dtype=torch.int64)
  mask = torch.ones((B, T), dtype=torch.int64)
  batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("sequence", min=2,
                                                                            max=65536)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  with torch.no_grad():
    program = torch.onnx.export(
        _wrapper(model), (ids, mask), dynamo=True, opset_version=opset,
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        external_data=False, verbose=False)
  program.save(out_path)
  return out_path


def quantize_int4(onnx_in: str, onnx_out: str, block_size: int = 32,
                  symmetric: bool = True) -> str:
  """Weight-only int4 of every MatMul with a constant weight (onnxruntime MatMulNBits)."""
  import onnx  # noqa: PLC0415
  from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer  # noqa
  logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
  model = onnx.load(onnx_in)
  q = MatMulNBitsQuantizer(model, block_size=block_size, is_symmetric=symmetric)
  q.process()
  q.model.save_model_to_file(onnx_out, use_external_data_format=False)
  return onnx_out


def run(onnx_path: str, ids_BT: np.ndarray) -> np.ndarray:
  """float32 logits [B, T, V] from onnxruntime on CPU."""
  import onnxruntime as ort  # noqa: PLC0415
  sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
  ids = np.asarray(ids_BT, np.int64)
  return sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
