"""`lmstack eval --chat`: does the model answer, and does it behave like an assistant?

Each held-out conversation is cut before its last assistant turn; the model answers greedily and the
reply is scored against that turn: exact match (after normalising case, spaces and end punctuation),
contains match (the short answer the record's `meta` names, as whole words), and format adherence:
the reply ends its turn with <|im_end|> and does not leak into other roles ("user:", a new
<|im_start|>). Several models answer the same questions, so a base model and its fine-tune are
compared side by side; results go to JSON and a short markdown table.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
from dataclasses import dataclass
from pathlib import Path

from lmstack.engine.tool_calls import CLOSE, OPEN
from lmstack.errors import LmstackError
from lmstack.io.chat_template import CHATML_TEMPLATE
from lmstack.io.conversations import END_OF_TURN, Conversation, encode_chat, special_token_ids

_ROLE_LEAK = re.compile(r"(?im)(<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>|^\s*(user|assistant|system)\s*:)")


@dataclass
class Question:
    prompt: list[dict]
    reference: str
    answer: str
    task: str
    conv: Conversation | None = None  # the record: its own tools, and meta.calls (the expected first calls)


def questions_from(convs: list[Conversation]) -> list[Question]:
    """Each conversation up to its last user turn (a tool record's calls and results are what the model
    must produce, so they are cut too), and its last assistant turn as reference."""
    out = []
    for c in convs:
        last = max((i for i, m in enumerate(c.messages) if m["role"] == "assistant"), default=None)
        user = max((i for i, m in enumerate(c.messages) if m["role"] == "user"), default=None)
        if last is None or user is None or last < user:
            continue
        ref = c.messages[last]["content"]
        out.append(Question(c.messages[: user + 1], ref, str(c.meta.get("answer") or ref),
                            str(c.meta.get("task", "all")), c))
    if not out:
        raise LmstackError("no conversation has an assistant turn to score")
    return out


def normalise(text: str) -> str:
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .!?,;:'\"")


def contains(reply: str, answer: str) -> bool:
    a = normalise(answer)
    return bool(a) and re.search(r"(?<!\w)" + re.escape(a) + r"(?!\w)", normalise(reply)) is not None


def without_calls(text: str) -> str:
    """The reply's words: a call block is not an answer, whether it closed without parsing or was cut
    off unclosed by the token budget (its arguments would otherwise match the question's words)."""
    return re.sub(re.escape(OPEN) + r".*?(?:" + re.escape(CLOSE) + r"|\Z)", " ", text, flags=re.S)


def score_reply(text: str, ended_turn: bool, q: Question, calls: list[dict] | None = None) -> dict:
    """Match, format, and (given the first reply's calls, for a record that names the calls it expects)
    whether those calls are exactly the expected ones: names and arguments, in any order."""
    leak = _ROLE_LEAK.search(text) is not None
    text = without_calls(text)
    want = q.conv.meta.get("calls") if q.conv is not None else None
    call_ok = None if calls is None or want is None else _call_keys(calls) == _call_keys(want)
    return {"exact": normalise(text) == normalise(q.reference), "contains": contains(text, q.answer),
            "ends_turn": ended_turn, "no_leak": not leak, "format_ok": ended_turn and not leak, "call_ok": call_ok}


def _call_keys(calls: list[dict]) -> list[str]:
    return sorted(json.dumps([c["name"], c["arguments"]], sort_keys=True) for c in calls)


def answer_all(engine, prompts: list[list[dict]], max_new_tokens: int = 64, batch: int = 16,
               template: str | None = None) -> list[tuple[str, bool]]:
    """Greedy replies from an engine (lmstack.engine contract) and whether each ended its turn."""
    from lmstack.engine import SamplingParams

    tok = engine.tokenizer
    template = template or getattr(engine, "chat_template", None) or CHATML_TEMPLATE
    end_id = special_token_ids(tok).get(END_OF_TURN)
    stop = [end_id] if end_id is not None else None
    encoded = [encode_chat(tok, p, template=template, add_generation_prompt=True, with_mask=False)[0]
               for p in prompts]
    out: list[tuple[str, bool] | None] = [None] * len(prompts)
    room = {i: min(max_new_tokens, engine.max_seq_len - len(ids)) for i, ids in enumerate(encoded)}
    for i, r in room.items():
        if r <= 0:
            out[i] = ("", False)  # the question alone fills the context: no room to answer
    todo = [i for i in range(len(prompts)) if out[i] is None]
    for n in sorted({room[i] for i in todo}):
        group = [i for i in todo if room[i] == n]
        for s in range(0, len(group), batch):
            chunk = group[s : s + batch]
            params = SamplingParams(max_new_tokens=n, temperature=0.0, stop_token_ids=stop)
            for i, c in zip(chunk, engine.generate([encoded[i] for i in chunk], params), strict=True):
                out[i] = (c.text, c.finish_reason == "stop")
    return out  # type: ignore[return-value]


def side_by_side(engines: dict[str, object], prompts: list[list[dict]], max_new_tokens: int = 48) -> str:
    """The same questions answered by each model, as plain text for a terminal."""
    replies = {name: answer_all(eng, prompts, max_new_tokens) for name, eng in engines.items()}
    out = []
    for i, p in enumerate(prompts):
        turns = " / ".join(f"{m['role']}: {m['content']}" for m in p if m["role"] != "system").replace("\n", " ")
        out.append(f"\n{turns}")
        for name in engines:
            text, ended = replies[name][i]
            text = text.strip().replace("\n", " / ") or "(nothing)"
            out.append(f"  {name:<10} {text[:160]}{'' if ended else '  [no end of turn]'}")
    return "\n".join(out)


def evaluate_chat(engines: dict[str, object], convs: list[Conversation], max_new_tokens: int = 64,
                  limit: int | None = None, progress: bool = False, tools: list | None = None,
                  tool_models: list[str] | None = None, tasks: list[str] | None = None,
                  per_task: int | None = None) -> dict:
    """Score each model on the same questions; {"models": {name: metrics}, "examples": [...]}. With
    `tools` each model (or each named in `tool_models`) answers twice, without tools ("name") and
    through the tool loop ("name+tools"): a record that offers its own tools gets those, every other
    question gets `tools`. `tasks` and `per_task` pick the questions: these tasks only, so many of each."""
    qs = pick_questions(questions_from(convs), tasks, per_task)
    qs = qs[:limit] if limit else qs
    replies: dict[str, list[tuple[str, bool, list | None]]] = {}
    for name, eng in engines.items():
        if progress:
            print(f"answering {len(qs)} held-out questions with {name} ...")
        replies[name] = [(t, e, None) for t, e in answer_all(eng, [q.prompt for q in qs], max_new_tokens)]
        if tools is not None and (tool_models is None or name in tool_models):
            if progress:
                print(f"answering them with {name} and its tools ...")
            replies[f"{name}+tools"] = answer_with_tools(eng, qs, tools, max_new_tokens)
    models, examples = {}, []
    for name, rs in replies.items():
        models[name] = _aggregate([score_reply(t, e, q, c) for (t, e, c), q in zip(rs, qs, strict=True)], qs)
    for i, q in enumerate(qs):
        row = {"task": q.task, "question": q.prompt[-1]["content"], "reference": q.reference, "answer": q.answer}
        for name, rs in replies.items():
            text, ended, calls = rs[i]
            row[name] = {"reply": text, **score_reply(text, ended, q, calls)} | ({"calls": calls} if calls else {})
        examples.append(row)
    return {"n": len(qs), "max_new_tokens": max_new_tokens, "models": models, "examples": examples}


def pick_questions(qs: list[Question], tasks: list[str] | None, per_task: int | None) -> list[Question]:
    """The questions of the named tasks (all when None), at most per_task of each, in file order."""
    if tasks is not None and (missing := set(tasks) - {q.task for q in qs}):
        raise LmstackError(f"no held-out question has task {sorted(missing)[0]!r}")
    counts: dict[str, int] = {}
    out = []
    for q in qs:
        if (tasks is None or q.task in tasks) and (per_task is None or counts.get(q.task, 0) < per_task):
            counts[q.task] = counts.get(q.task, 0) + 1
            out.append(q)
    return out


@dataclass
class ClientFunction:
    """A function a record offers that no built-in tool implements: in an evaluation its call is only
    recorded (the client would run it), and it answers like a client that did: status ok."""

    spec_: dict

    @property
    def name(self) -> str:
        return self.spec_["function"]["name"]

    def spec(self) -> dict:
        return self.spec_

    def __call__(self, arguments: dict):
        from lmstack.tools import ToolResult

        return ToolResult(json.dumps({"status": "ok"}))


def question_tools(q: Question, default: list) -> list:
    """The tools a question is asked with: its record's own (built-in ones real, the rest recorded
    client functions), or `default` for a record that offers none."""
    if q.conv is None or not q.conv.tools:
        return default
    from lmstack.tools.sft_tools import tools_for

    real = {t.name: t for t in tools_for(q.conv)}
    return [real.get(s["function"]["name"]) or ClientFunction(s) for s in q.conv.tools]


def answer_with_tools(engine, qs: list[Question], tools: list, max_new_tokens: int = 64,
                      workers: int = 16) -> list[tuple[str, bool, list]]:
    """Each question through the real tool loop, greedy, many at once (the engine batches them):
    (the final answer, whether it ended its turn, the first reply's calls)."""
    from lmstack.engine import SamplingParams
    from lmstack.engine.tool_loop import LoopConfig, tool_loop

    end_id = special_token_ids(engine.tokenizer).get(END_OF_TURN)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0,
                            stop_token_ids=[end_id] if end_id is not None else None)
    cfg = LoopConfig(max_rounds=3)
    offered = [question_tools(q, tools) for q in qs]

    def one(i: int) -> tuple[str, bool, list]:
        text, ended, first, rounds = [], False, [], 0
        try:
            for ev in tool_loop(engine, qs[i].prompt, offered[i], params, cfg):
                if ev.kind == "text":
                    text.append(ev.text)
                elif ev.kind == "call" and rounds == 0:
                    first.append({"name": ev.call.name, "arguments": ev.call.arguments})
                elif ev.kind == "round":
                    rounds += 1
                    ended = ev.finish_reason == "stop"
                elif ev.kind == "result":
                    text = []  # the answer is what comes after the last result
        except LmstackError:  # the conversation outgrew the context: no answer
            return "".join(text), False, first
        return "".join(text), ended, first

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(qs))))


def _aggregate(scores: list[dict], qs: list[Question]) -> dict:
    keys = ("exact", "contains", "ends_turn", "no_leak", "format_ok")

    def mean(rows: list[dict]) -> dict:
        out = {k: sum(r[k] for r in rows) / max(len(rows), 1) for k in keys}
        scored = [r["call_ok"] for r in rows if r.get("call_ok") is not None]
        return out | ({"call_ok": sum(scored) / len(scored), "n_calls_scored": len(scored)} if scored else {})

    by_task: dict[str, list[dict]] = {}
    for s, q in zip(scores, qs, strict=True):
        by_task.setdefault(q.task, []).append(s)
    return {**mean(scores), "by_task": {t: {"n": len(rows), **mean(rows)} for t, rows in sorted(by_task.items())}}


def markdown_report(result: dict, examples: int = 6) -> str:
    """Metrics per model, contains-match per task, and a few questions answered side by side."""
    names = list(result["models"])
    lines = [f"{result['n']} held-out conversations, greedy, at most {result['max_new_tokens']} new tokens.", "",
             "| model | exact | contains | ends turn | no role leak |", "|---|---|---|---|---|"]
    for n in names:
        m = result["models"][n]
        lines.append(f"| {n} | {m['exact']:.1%} | {m['contains']:.1%} | {m['ends_turn']:.1%} | {m['no_leak']:.1%} |")
    tasks = sorted({t for n in names for t in result["models"][n]["by_task"]})
    lines += ["", "contains match by task (and, for tasks that name the calls expected, the share of first"
              " replies whose calls match them exactly):", "", "| task | n | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]
    for t in tasks:
        cells = [_task_cell(result["models"][n]["by_task"].get(t, {})) for n in names]
        count = result["models"][names[0]]["by_task"].get(t, {}).get("n", 0)
        lines.append(f"| {t} | {count} | " + " | ".join(cells) + " |")
    if examples:
        lines += ["", "| question | reference | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for ex in _spread(result["examples"], examples):
            cells = [_cell(ex["question"]), _cell(ex["reference"])] + [_cell(ex[n]["reply"]) for n in names]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _task_cell(m: dict) -> str:
    """Contains match, and in brackets the exact-calls score where the task names its calls."""
    return f"{m.get('contains', 0):.0%}" + (f" (calls {m['call_ok']:.0%})" if "call_ok" in m else "")


def _spread(rows: list[dict], k: int) -> list[dict]:
    """Up to k examples, one per task first, so the table shows every kind of question."""
    seen, out = set(), []
    for r in rows:
        if r["task"] not in seen:
            seen.add(r["task"])
            out.append(r)
    return (out + [r for r in rows if r not in out])[:k]


def _cell(text: str, width: int = 90) -> str:
    text = text.replace("|", "\\|").replace("\n", " / ").strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def write_results(result: dict, json_path: str | Path | None, md_path: str | Path | None) -> None:
    import json

    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    if md_path:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        Path(md_path).write_text(markdown_report(result))
