"""A model for inference, whatever folder it is in: a run's checkpoint or a quantized folder.

    config, model = inference.load("runs/base")                 # latest step, default device
    config, model = inference.load("runs/base/checkpoints/8000", mesh)
    config, model = inference.load("runs/base-int4")           # `swahili100 quantize` output

Evaluation, generation and export call this; the checkpoint module knows nothing of
quantization, whose folder format and reader are `quantized.py` (the quantizer, a phase above,
writes it).
"""

from swahili100 import checkpoint, config_lib, quantized


def load(path: str, mesh=None):
  """(config, model) of `path`; a quantized folder loads as its quantized model."""
  if quantized.is_quantized(path):
    return quantized.load(config_lib.split_path(path)[0])
  return checkpoint.load_model(path, mesh)
