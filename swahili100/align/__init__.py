"""Phase 12, alignment: supervised fine-tuning (SFT) and direct preference optimization (DPO).

`chat.py` renders conversations in the project's chat format and marks the tokens to train;
`main.py` runs `swahili100 align --stage sft|dpo`. `sample_sft.jsonl` and `sample_dpo.jsonl` are
small original Swahili examples for the demo.
"""
