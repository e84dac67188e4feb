from dataclasses import dataclass

import pytest
import torch

from lmstack.chat_eval import contains, evaluate_chat, markdown_report, normalise, questions_from, score_reply
from lmstack.engine import Engine
from lmstack.errors import LmstackError
from lmstack.io.conversations import Conversation
from lmstack.model import Transformer
from tests.conftest import tiny_config


def conv(q, a, answer, task="arithmetic"):
    return Conversation([{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
                         {"role": "assistant", "content": a}], meta={"answer": answer, "task": task})


CONVS = [conv("What is 2 + 5?", "2 + 5 = 7.", "7"), conv("What is 9 + 8?", "9 + 8 = 17.", "17"),
         conv("Who are you?", "I am lmstack's assistant.", "lmstack's assistant", "identity")]


@dataclass
class Done:
    token_ids: list
    text: str
    finish_reason: str
    prompt_tokens: int


class ScriptedEngine:
    """Answers from a script, in the engine's interface; records the prompts it was given."""

    def __init__(self, tokenizer, replies, max_seq_len=256):
        self.tokenizer, self.replies, self.max_seq_len = tokenizer, replies, max_seq_len
        self.prompts = []

    def generate(self, prompts, params):
        self.prompts += prompts
        assert params.temperature == 0
        return [Done([], *self.replies[self.tokenizer.decode(p)], len(p)) for p in prompts]


def test_matching_rules():
    assert normalise("  The  Answer is 7. ") == "the answer is 7"
    assert contains("2 + 5 = 7.", "7") and not contains("It is 17.", "7")  # whole words only
    q = questions_from([CONVS[0]])[0]
    assert score_reply("2 + 5 = 7", True, q) == {"exact": True, "contains": True, "ends_turn": True,
                                                 "no_leak": True, "format_ok": True, "call_ok": None}
    leaky = score_reply("7.\nuser: and now?", True, q)
    assert leaky["contains"] and not leaky["no_leak"] and not leaky["format_ok"]
    assert not score_reply("7 <|im_start|>assistant", True, q)["no_leak"]
    assert not score_reply("7", False, q)["format_ok"]
    # a call block is not an answer: cut off unclosed, or closed without parsing
    assert not score_reply('<tool_call>{"name": "calculator", "arguments": {"expression": "7', False, q)["contains"]
    assert not score_reply('<tool_call>{"name": 7}</tool_call>', True, q)["contains"]
    assert score_reply('<tool_call>{"name": 1}</tool_call> So it is 7.', True, q)["contains"]
    with pytest.raises(LmstackError, match="no conversation"):
        questions_from([Conversation([{"role": "assistant", "content": "hi"}])])


def test_models_compared_on_the_same_questions(tokenizer):
    def prompt_text(c):
        return ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n" + c.messages[1]["content"]
                + "<|im_end|>\n<|im_start|>assistant\n")

    good = {prompt_text(CONVS[0]): ("2 + 5 = 7.", "stop"), prompt_text(CONVS[1]): ("It is 17", "stop"),
            prompt_text(CONVS[2]): ("I am lmstack's assistant.", "stop")}
    bad = {k: ("ROMEO: 7 and more", "length") for k in good}
    engines = {"base": ScriptedEngine(tokenizer, bad), "tuned": ScriptedEngine(tokenizer, good)}
    r = evaluate_chat(engines, CONVS, max_new_tokens=16)
    assert engines["tuned"].prompts == engines["base"].prompts and len(engines["tuned"].prompts) == 3
    t, b = r["models"]["tuned"], r["models"]["base"]
    assert t["exact"] == pytest.approx(2 / 3) and t["contains"] == 1.0 and t["format_ok"] == 1.0
    assert b["exact"] == 0 and b["contains"] == pytest.approx(1 / 3) and b["ends_turn"] == 0
    assert t["by_task"]["arithmetic"] == {"n": 2, "exact": 0.5, "contains": 1.0, "ends_turn": 1.0,
                                          "no_leak": 1.0, "format_ok": 1.0}
    assert r["examples"][1]["tuned"]["reply"] == "It is 17" and r["examples"][1]["reference"] == "9 + 8 = 17."
    md = markdown_report(r)
    assert "| tuned | 66.7% | 100.0% | 100.0% | 100.0% |" in md and "| identity | 1 | 0% | 100% |" in md


def test_real_engine_answers_and_a_full_context_is_no_answer(tokenizer):
    torch.manual_seed(0)
    eng = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=64)), tokenizer)
    long = conv("king " * 80, "yes", "yes")
    r = evaluate_chat({"tiny": eng}, CONVS[:2] + [long], max_new_tokens=5)
    assert r["n"] == 3
    replies = [ex["tiny"] for ex in r["examples"]]
    assert replies[2]["reply"] == "" and not replies[2]["ends_turn"]  # the question fills the context
    assert all(len(tokenizer.encode(x["reply"])) <= 6 for x in replies[:2])


def test_eval_with_tools_runs_the_tool_loop_and_scores_first_calls(tokenizer):
    import random

    from lmstack.chat_eval import ClientFunction, question_tools
    from lmstack.io.sft_functions import function_call, no_fit
    from lmstack.tools.calculator import calculator_tool

    calc = calculator_tool()
    rng = random.Random(0)
    fc, nf = function_call(rng, True), no_fit(rng, True)
    own = Conversation([{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
                       tools=[calc.spec()], meta={"answer": "4", "task": "calculator"})
    qs = questions_from([CONVS[0], fc, own])
    assert qs[1].prompt == fc.messages[:1]  # the record's own calls and results are not shown to the model
    assert question_tools(qs[0], [calc]) == [calc]  # a record without tools gets the evaluation's tools
    offered = question_tools(qs[1], [calc])
    assert [t.name for t in offered] == [s["function"]["name"] for s in fc.tools]
    assert all(isinstance(t, ClientFunction) for t in offered)
    assert [type(t).__name__ for t in question_tools(qs[2], [])] == ["Tool"]  # a built-in tool runs for real
    want = fc.meta["calls"]
    assert score_reply("", True, qs[1], list(reversed(want)))["call_ok"]  # any order
    assert not score_reply("", True, qs[1], [])["call_ok"]
    assert not score_reply("", True, qs[1], [{"name": want[0]["name"], "arguments": {}}])["call_ok"]

    torch.manual_seed(0)
    eng = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=2048)).eval(), tokenizer, max_batch=4)
    try:
        r = evaluate_chat({"tiny": eng}, [CONVS[0], fc, nf], max_new_tokens=12, tools=[calc])
    finally:
        eng.close()
    assert set(r["models"]) == {"tiny", "tiny+tools"}
    with_tools = r["models"]["tiny+tools"]["by_task"]
    assert with_tools["function_call"]["n_calls_scored"] == 1 and with_tools["no_fit"]["n_calls_scored"] == 1
    assert "call_ok" not in r["models"]["tiny"]["by_task"]["function_call"]  # no tools offered: no call scored
    assert all("reply" in ex["tiny+tools"] for ex in r["examples"])
    assert "(calls " in markdown_report(r)


def test_questions_are_picked_by_task():
    from lmstack.chat_eval import pick_questions

    qs = questions_from(CONVS)
    assert [q.task for q in pick_questions(qs, ["arithmetic"], 1)] == ["arithmetic"]
    assert len(pick_questions(qs, None, 1)) == 2 and len(pick_questions(qs, None, None)) == 3
    with pytest.raises(LmstackError, match="no held-out question has task 'poetry'"):
        pick_questions(qs, ["poetry"], None)
