"""Named special tokens shared by the tokenizer, the records, alignment and export.

Ids are fixed by order: the tokenizer trainer adds them first, so `<|endoftext|>` is id 0. An
imported model's tokenizer keeps its own; `of(tokenizer)` gives the ids a run uses either way.
"""

import dataclasses

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


# An imported open model's tokenizer has its own special tokens: its end-of-text token ends
# each document in the records and stops generation, as <|endoftext|> does here.
OPEN_EOS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")   # Qwen/SmolLM2/GPT-2, Llama 3
OPEN_BOS = ("<|begin_of_text|>", "<s>", "<bos>")
OPEN_PAD = ("<|pad|>", "<pad>", "<|finetune_right_pad_id|>")
OPEN_END_OF_TURN = ("<|eot_id|>", "<|im_end|>", "<end_of_turn>")


@dataclasses.dataclass(frozen=True)
class Specials:
  """The special ids a run's tokenizer uses; `own` is the project's set (chat roles, align)."""
  eos: int
  bos: int | None
  pad: int
  stop: tuple[int, ...]
  names: dict[str, int]
  own: bool


OWN = Specials(EOS_ID, BOS_ID, PAD_ID, STOP_IDS, dict(IDS), True)


def of(tok, where: str = "the tokenizer") -> Specials:
  """The project's special tokens when `tok` has them at their ids; else the open model's, found
  by the names its family uses (OPEN_*). Refuses a tokenizer with no end-of-text token."""
  vocab = tok.get_vocab(with_added_tokens=True)
  if all(vocab.get(name) == i for name, i in IDS.items()):
    return OWN
  added = {t.content: i for i, t in tok.get_added_tokens_decoder().items() if t.special}

  def first(names):
    return next((added[n] for n in names if n in added), None)

  eos = first(OPEN_EOS)
  if eos is None:
    raise ValueError(
        f"{where}: none of its special tokens {sorted(added)[:8]} ends a text (looked for "
        f"{list(OPEN_EOS)}), and ids 0..{len(ALL) - 1} are not {list(ALL)}: use an open model's "
        "tokenizer.json as published, or train one with `swahili100 train-tokenizer`")
  turn = first(OPEN_END_OF_TURN)
  pad = first(OPEN_PAD)
  return Specials(eos=eos, bos=first(OPEN_BOS), pad=eos if pad is None else pad,
                  stop=(eos,) if turn is None else (eos, turn), names=dict(sorted(added.items())),
                  own=False)
