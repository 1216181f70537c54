"""Named special tokens shared by the tokenizer, the records, alignment and export.

Ids are fixed by order: the tokenizer trainer adds them first, so `<|endoftext|>` is id 0.
"""

ENDOFTEXT = "<|endoftext|>"  # ends every document in the token records
PAD = "<|pad|>"
BOS = "<|bos|>"  # beginning of text, used by chat prompts and generation
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END_OF_TURN = "<|end|>"

ALL = (ENDOFTEXT, PAD, BOS, SYSTEM, USER, ASSISTANT, END_OF_TURN)
IDS = {name: i for i, name in enumerate(ALL)}
EOS_ID = IDS[ENDOFTEXT]
PAD_ID = IDS[PAD]
BOS_ID = IDS[BOS]
END_ID = IDS[END_OF_TURN]
STOP_IDS = (EOS_ID, END_ID)  # generation stops at the end of a text or of a chat turn
