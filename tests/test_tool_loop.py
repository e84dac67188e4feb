"""The tool loop: calls run, results come back in the tool role, and nothing a call gets wrong ends the reply."""

import time

import pytest
import torch

from lmstack.engine import Engine
from lmstack.engine.sampling import SamplingParams
from lmstack.engine.tool_calls import ToolCall
from lmstack.engine.tool_loop import LoopConfig, run_tool, tool_loop
from lmstack.errors import LmstackError
from lmstack.model import Transformer
from lmstack.tools import Tool
from lmstack.tools.calculator import calculator_tool
from tests.conftest import tiny_config

PICK = Tool("pick", "Pick a letter.", {"type": "object", "properties": {"x": {"enum": ["a", "b"]}},
                                      "required": ["x"], "additionalProperties": False},
            fn=lambda x: f"picked {x}")


@pytest.fixture(scope="module")
def engine(tokenizer):
    torch.manual_seed(0)  # an untrained model: only the constraint makes its calls valid
    e = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=2048)).eval(), tokenizer, max_batch=2)
    yield e
    e.close()


def test_a_required_call_runs_and_its_result_comes_back(engine):
    recorded = []
    events = list(tool_loop(engine, [{"role": "user", "content": "Pick one."}], [PICK, calculator_tool()],
                            SamplingParams(max_new_tokens=120, temperature=1.0, seed=3),
                            LoopConfig(max_rounds=1, tool_choice="pick", parallel_tool_calls=False),
                            record=recorded.append))
    calls = [e for e in events if e.kind == "call"]
    results = [e for e in events if e.kind == "result"]
    assert calls and calls[0].call.name == "pick" and calls[0].call.arguments["x"] in ("a", "b")
    assert results[0].text == f"picked {calls[0].call.arguments['x']}" and not results[0].is_error
    first, tool_msg, answer = recorded[0], recorded[1], recorded[-1]
    assert first["tool_calls"][0]["id"] == tool_msg["tool_call_id"] and tool_msg["role"] == "tool"
    assert answer["role"] == "assistant" and "tool_calls" not in answer  # out of rounds: words only


def test_tool_choice_none_and_unknown(engine):
    recorded = []
    list(tool_loop(engine, [{"role": "user", "content": "Hi"}], [PICK], SamplingParams(max_new_tokens=8, seed=1),
                   LoopConfig(tool_choice="none"), record=recorded.append))
    assert len(recorded) == 1 and "tool_calls" not in recorded[0]
    with pytest.raises(LmstackError, match="not one of the tools"):
        list(tool_loop(engine, [{"role": "user", "content": "Hi"}], [PICK], SamplingParams(max_new_tokens=4),
                       LoopConfig(tool_choice="launch")))


def _slow(seconds):
    time.sleep(seconds)
    return "done"


def _crash():
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize("call, expect", [
    (ToolCall("launch", {}), "no tool named 'launch'"),
    (ToolCall("pick", {"x": "z"}), "bad arguments for pick"),
    (ToolCall("pick", {}), "bad arguments for pick"),
    (ToolCall("slow", {"seconds": 5}), "did not finish within 0.5 s"),
    (ToolCall("crash", {}), "crash failed (RuntimeError: disk on fire)"),
    (ToolCall("calculator", {"expression": "1/0"}), "division by zero"),
])
def test_tool_failures_become_error_results(call, expect):
    tools = {"pick": PICK, "calculator": calculator_tool(),
             "slow": Tool("slow", "", {"type": "object", "properties": {"seconds": {"type": "number"}}}, fn=_slow),
             "crash": Tool("crash", "", {"type": "object", "properties": {}}, fn=_crash)}
    t0 = time.perf_counter()
    content, is_error, _ = run_tool(tools, call, timeout=0.5, limit=100)
    assert is_error and expect in content and time.perf_counter() - t0 < 2


def test_results_are_cut_to_the_limit():
    big = Tool("big", "", {"type": "object", "properties": {}}, fn=lambda: "x" * 10_000)
    content, is_error, _ = run_tool({"big": big}, ToolCall("big", {}), timeout=5, limit=100)
    assert not is_error and len(content) < 200 and content.endswith("[... cut]")


SMOLLM2_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                    "'<|im_end|>' + '\n'}}{% endfor %}"
                    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_a_template_that_drops_tools_is_replaced_for_chatml_models(tokenizer):
    from lmstack.engine.tool_calls import tool_template
    from lmstack.io.chat_template import CHATML_TEMPLATE
    from lmstack.io.conversations import encode_chat

    assert tool_template(tokenizer, SMOLLM2_TEMPLATE) == CHATML_TEMPLATE  # SmolLM2's own shows neither tools nor calls
    assert tool_template(tokenizer, CHATML_TEMPLATE) == CHATML_TEMPLATE
    ids, _ = encode_chat(tokenizer, [{"role": "user", "content": "hi"}], tools=[PICK.spec()],
                         template=tool_template(tokenizer, SMOLLM2_TEMPLATE), add_generation_prompt=True)
    assert '"name": "pick"' in tokenizer.decode(ids)
