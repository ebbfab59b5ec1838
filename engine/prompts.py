"""How an instruction example becomes model text. One definition, used by training, scanning,
prediction and detection alike, so that the loss the engine differentiates is the loss the
model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TEMPLATE = "Definition: {definition}\nInput: {input}\nOutput:"


@dataclass(frozen=True)
class PromptFormat:
    template: str = DEFAULT_TEMPLATE
    answer_prefix: str = " "  # the answer follows "Output:" after one space
    answer_suffix: str = ""   # e.g. the tokenizer's EOS, appended by the caller if wanted

    def prompt(self, definition: str, input: str) -> str:
        return self.template.format(definition=definition.strip(), input=input.strip())

    def answer(self, output: str) -> str:
        return self.answer_prefix + output.strip() + self.answer_suffix


DEFAULT_FORMAT = PromptFormat()
