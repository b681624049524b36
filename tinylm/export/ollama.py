"""The ollama `Modelfile` beside an exported GGUF: tinylm's chat template in ollama's Go template language.

ollama renders a prompt with its own template, not the GGUF's Jinja one, so the template is written again here:
each message as `<|im_start|>ROLE\\nCONTENT<|im_end|>\\n`, then the assistant's opening, which is what tinylm's chat
template gives for a conversation without tools (tests/test_gguf.py renders both). The context is the trained
one: ollama's default would run past the positions the model has seen.
"""

from __future__ import annotations

from tinylm.tokens.tokenizer_files import EOS, IM_END, IM_START

TEMPLATE = (
    "{{- range .Messages }}"
    + IM_START
    + "{{ .Role }}\n{{ .Content }}"
    + IM_END
    + "\n{{ end }}"
    + IM_START
    + "assistant\n"
)


def modelfile(gguf_file: str, context: int) -> str:
    lines = [f"FROM ./{gguf_file}", f'TEMPLATE """{TEMPLATE}"""']
    lines += [f'PARAMETER stop "{token}"' for token in (IM_END, EOS)]
    lines.append(f"PARAMETER num_ctx {context}")
    return "\n".join(lines) + "\n"
