"""A model for inference, whatever folder it is in: a run's checkpoint or a quantized folder.

    config, model = inference.load("runs/base")                 # latest step, default device
    config, model = inference.load("runs/base/checkpoints/8000", mesh)
    config, model = inference.load("runs/base-int4")           # `swahili100 quantize` output

Evaluation, generation and export call this; the checkpoint module knows nothing of
quantization, whose loader lives with the quantizer and is imported only for such a folder.
"""

from swahili100 import checkpoint, config_lib
from swahili100.export import quantize


def load(path: str, mesh=None):
  """(config, model) of `path`; a quantized folder loads as its quantized model."""
  if quantize.is_quantized(path):
    return quantize.load_quantized(config_lib.split_path(path)[0])
  return checkpoint.load_model(path, mesh)
