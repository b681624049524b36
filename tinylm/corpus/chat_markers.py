"""Chat special tokens inside pretraining text, told apart from the text they wrap.

MiniMind's `pretrain_hq.jsonl` wraps every line's question-answer pairs in
`<|im_start|>…<|im_end|>`, and other corpora carry Llama or DeepSeek markers. To the quality
filters these are symbols (`<`, `|`, `>`) and Latin letters, enough to drop short Chinese
lines as `too_many_symbols` or `wrong_script`; to MinHash they are shingles every such line
shares. So the clean and dedup stages judge the text without them, and the clean stage's
`chat_markers` option decides whether the stored text keeps them (MiniMind trains on them).
"""

from __future__ import annotations

import re

# ChatML (<|im_start|>, <|im_end|>, <|endoftext|>: Qwen, MiniMind and tinylm's own tokenizer),
# Llama 3 (<|begin_of_text|>, <|eot_id|>), Phi and GLM (<|user|>, <|end|>), DeepSeek's
# full-width <｜begin▁of▁sentence｜>, Llama 2's <s>[INST] … [/INST]</s>, and the reasoning and
# tool-call tags of R1-style and Qwen data (<think>, <tool_call>, <tool_response>: tinylm's own special tokens too).
CHAT_MARKER = re.compile(
    r"<\|[A-Za-z0-9_.:\-]{1,64}\|>|<｜[^｜<>\s]{1,64}｜>|</?s>|\[/?INST\]|</?(?:think|tool_call|tool_response)>"
)


def without_chat_markers(text: str) -> str:
    """The text with its chat markers removed, each wrapped piece on its own line."""
    if "<" not in text and "[" not in text:
        return text
    pieces = CHAT_MARKER.split(text)
    if len(pieces) == 1:
        return text
    return "\n".join(piece for piece in (piece.strip() for piece in pieces) if piece)
