"""Phase 13: export a checkpoint to Hugging Face / ONNX / GGUF, upload it, quantize it.

- `hf`: JAX params -> `LlamaForCausalLM` folder (config, safetensors, tokenizer, model card).
- `onnx_export`: HF folder -> ONNX (optionally int4 MatMulNBits).
- `gguf_export`: HF folder -> llama.cpp GGUF (F32/F16/Q8_0/Q4_0).
- `hub`: upload a folder to the Hugging Face Hub.
- `quantize`: weight-only int4/int8 groupwise quantization of the JAX model (the format: `swahili100/quantized.py`).
"""
