"""The chat template: ChatML turns with Hermes-style tool calls, as one Jinja string.

The same string is rendered here with jinja2 and stored in the GGUF file as
`tokenizer.chat_template`, so llama.cpp and any other runtime format conversations exactly as
lmstack trained them.
"""

from __future__ import annotations

import functools

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lmstack.errors import LmstackError

CHATML_TEMPLATE = (
    "{% if tools %}"
    "<|im_start|>system\n"
    "{% if messages and messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "You may call one or more functions to assist with the user query. "
    "The function signatures are within <tools></tools> XML tags:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
    "{% set skip_first = messages and messages[0].role == 'system' %}"
    "{% else %}{% set skip_first = false %}{% endif %}"
    "{% for message in messages %}"
    "{% if not (loop.first and skip_first) %}"
    "{% if message.role == 'tool' %}"
    "<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n"
    "{% else %}"
    "<|im_start|>{{ message.role }}\n{{ message.content or '' }}"
    "{% for call in message.tool_calls or [] %}"
    "{% set fn = call.function if call.function is defined else call %}"
    '\n<tool_call>\n{"name": "{{ fn.name }}", "arguments": '
    "{{ fn.arguments if fn.arguments is string else fn.arguments | tojson }}}\n</tool_call>"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

def _raise(message: str):
    """Templates from other models call raise_exception() on conversations they cannot format."""
    raise LmstackError(f"chat template: {message}")


_env = ImmutableSandboxedEnvironment(trim_blocks=False, lstrip_blocks=False)
_env.globals["raise_exception"] = _raise


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    try:
        return _env.from_string(template)
    except TemplateError as e:
        raise LmstackError(f"chat template does not parse: {e}") from None


def render_chat(messages: list[dict], add_generation_prompt: bool = True, tools: list | None = None,
                template: str | None = CHATML_TEMPLATE, bos_token: str = "", eos_token: str = "") -> str:
    """Render a conversation to the text the model sees. `template` is a model's own Jinja chat
    template (GGUF `tokenizer.chat_template`); None or empty means the ChatML default. Templates
    written for HF transformers may use bos_token / eos_token, so those are passed too."""
    return _compile(template or CHATML_TEMPLATE).render(
        messages=messages, add_generation_prompt=add_generation_prompt, tools=tools or [],
        bos_token=bos_token, eos_token=eos_token,
    )
