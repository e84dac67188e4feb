"""The chat CLI with tools: each call and its result are shown as they happen and kept in the
conversation. The model here is scripted (it writes the replies given to it), so what is tested is
the loop and the terminal, not a model's skill."""

import io
import json

import pytest

from lmstack.engine.engine import TokenEvent
from lmstack.tools.calculator import calculator_tool


class ScriptedEngine:
    """Enough of an Engine for the tool loop: each submit() streams the next scripted reply."""

    def __init__(self, tokenizer, replies: list[str]):
        self.tokenizer, self.chat_template, self.max_seq_len = tokenizer, None, 4096
        self.replies, self.prompts = list(replies), []

    def submit(self, ids, params):
        self.prompts.append(ids)
        text = self.replies.pop(0)
        return _Request([TokenEvent(0, text[i:i + 5], None) for i in range(0, len(text), 5)]
                        + [TokenEvent(-1, "", "stop")])


class _Request(list):
    def cancel(self):
        pass


def test_chat_shows_calls_and_results_and_keeps_them(tokenizer):
    from lmstack.chat_cli import chat
    from lmstack.engine import SamplingParams

    call = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1234 * 5678"}}\n</tool_call>'
    engine = ScriptedEngine(tokenizer, ["Let me compute. " + call, "It is 7006652."])
    lines = iter(["What is 1234 times 5678?"])

    def read(_prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    history = chat(engine, SamplingParams(max_new_tokens=64), read=read, out=out, tools=[calculator_tool()])
    shown = out.getvalue()
    assert 'Let me compute. \n[calculator({"expression": "1234 * 5678"})]\n[-> 7006652]\nIt is 7006652.' in shown
    assert "<tool_call>" not in shown
    roles = [m["role"] for m in history]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert json.loads(history[1]["tool_calls"][0]["function"]["arguments"]) == {"expression": "1234 * 5678"}
    assert history[2]["content"] == "7006652" and history[3]["content"] == "It is 7006652."
    # the second round's prompt carried the result back to the model, in the tool role
    assert "7006652" in tokenizer.decode(engine.prompts[1])


def test_chat_tool_flags_are_checked_before_the_model(capsys):
    from lmstack.cli import main

    for argv, says in [(["chat", "--model", "nowhere.gguf", "--tools", "calc"], "unknown tool"),
                       (["chat", "--model", "nowhere.gguf", "--tools", "search"], "needs --docs"),
                       (["serve", "--model", "nowhere.gguf", "--tools", "python", "--docs", "x"], "only used by")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and says in err[0], err
