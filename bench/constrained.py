"""What constrained decoding costs and what it buys, on SmolLM2-135M-Instruct, in one run.

    python bench/constrained.py [--model smollm2-135m-instruct] [--rounds 5] [--json out.json]

1. Cost: decode tokens/s of the same greedy request with and without a JSON-schema constraint
   (an array of at least 64 short strings, so the reply cannot end early and every token is
   masked), interleaved rounds, medians; the ratio is the overhead (target: at most 10%).
2. Benefit: generated function-calling tasks (a user request and two to four tools with varied
   argument types) answered with tool_choice "required", with and without the constraint; a call
   counts as valid when it parses, names an offered tool and its arguments validate against that
   tool's schema (target with the constraint: every call valid).
3. With --libraries: the time to compute one token mask, alone, in llguidance (what lmstack uses)
   and in xgrammar when it is installed (`pip install xgrammar`; it is not a dependency), over the
   tokens of the same tool call, plus each library's one-off set-up time for the vocabulary.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jsonschema  # noqa: E402

from lmstack.engine import Engine, SamplingParams  # noqa: E402
from lmstack.engine.constrain import ToolCallConstraint, json_constraint  # noqa: E402
from lmstack.engine.tool_calls import parse_tool_calls  # noqa: E402
from lmstack.io.conversations import encode_chat  # noqa: E402

ARRAY = {"type": "array", "items": {"type": "string", "maxLength": 8}, "minItems": 64}
CITIES = ["Oslo", "Lima", "Kyoto", "Cairo", "Quito", "Perth"]


def _tok_s(engine: Engine, ids: list[int], n: int, constraint) -> float:
    params = SamplingParams(max_new_tokens=n, temperature=0, stop_token_ids=[], constraint=constraint)
    t0, count = time.perf_counter(), 0
    for ev in engine.submit(ids, params):
        count += ev.token_id >= 0
    return count / (time.perf_counter() - t0)


def cost(engine: Engine, rounds: int, n: int) -> dict:
    tok = engine.tokenizer
    ids, _ = encode_chat(tok, [{"role": "user", "content": "List some short words as a JSON array."}],
                         template=engine.chat_template, add_generation_prompt=True, with_mask=False)
    free, fenced = [], []
    for _ in range(rounds):
        free.append(_tok_s(engine, ids, n, None))
        fenced.append(_tok_s(engine, ids, n, lambda: json_constraint(tok, ARRAY)))
    f, c = statistics.median(free), statistics.median(fenced)
    return {"free_tok_s": f, "constrained_tok_s": c, "overhead": 1 - c / f, "tokens": n}


def _task(rng: random.Random) -> tuple[str, list[dict]]:
    """A request and the tools offered for it (names, argument types and enums vary)."""
    city = rng.choice(CITIES)
    pool = [
        {"name": "get_weather", "description": "Current weather in a city.",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                         "unit": {"enum": ["celsius", "fahrenheit"]}},
                        "required": ["city", "unit"], "additionalProperties": False}},
        {"name": "book_table", "description": "Reserve a restaurant table.",
         "parameters": {"type": "object", "properties": {"people": {"type": "integer", "minimum": 1},
                                                         "time": {"type": "string"}},
                        "required": ["people", "time"], "additionalProperties": False}},
        {"name": "convert_currency", "description": "Convert an amount between currencies.",
         "parameters": {"type": "object", "properties": {"amount": {"type": "number"},
                                                         "to": {"enum": ["EUR", "USD", "JPY"]}},
                        "required": ["amount", "to"], "additionalProperties": False}},
        {"name": "set_reminder", "description": "Remind the user of something.",
         "parameters": {"type": "object", "properties": {"text": {"type": "string"},
                                                         "days": {"type": "array", "items": {"type": "integer"}}},
                        "required": ["text"], "additionalProperties": False}},
    ]
    asks = [f"What's the weather in {city} in celsius?", f"Book a table for {rng.randint(2, 8)} at 19:30.",
            f"Convert {rng.randint(5, 500)} dollars to euros.", "Remind me to call mum in 3 days."]
    k = rng.randrange(len(pool))
    others = rng.sample([t for i, t in enumerate(pool) if i != k], rng.randint(1, 3))
    tools = [{"type": "function", "function": f} for f in rng.sample([pool[k]] + others, len(others) + 1)]
    return asks[k], tools


def benefit(engine: Engine, n_tasks: int, seed: int = 0, max_tokens: int = 160) -> dict:
    tok, rng = engine.tokenizer, random.Random(seed)
    valid, cut = {"free": 0, "constrained": 0}, {"free": 0, "constrained": 0}
    for _ in range(n_tasks):
        ask, tools = _task(rng)
        ids, _ = encode_chat(tok, [{"role": "user", "content": ask}], tools=tools, template=engine.chat_template,
                             add_generation_prompt=True, with_mask=False)
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
        fenced = lambda tools=tools: ToolCallConstraint(tok, tools, "required", parallel=False)
        for mode, factory in (("free", None), ("constrained", fenced)):
            params = SamplingParams(max_new_tokens=max_tokens, temperature=0, constraint=factory)
            r = engine.submit(ids, params).result()
            cut[mode] += r.finish_reason == "length"  # the budget ended it: a call may be unfinished
            calls = parse_tool_calls(tok.decode(r.token_ids))[1]
            try:
                ok = bool(calls) and all(jsonschema.validate(c.arguments, schemas[c.name]) is None for c in calls)
            except (KeyError, jsonschema.ValidationError):
                ok = False
            valid[mode] += ok
    return {"tasks": n_tasks, "max_tokens": max_tokens, **{f"valid_{k}": v / n_tasks for k, v in valid.items()},
            **{f"cut_by_length_{k}": v for k, v in cut.items()}}


CALL_SCHEMA = {"type": "object", "properties": {
    "name": {"const": "get_weather"},
    "arguments": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "f"]}},
                  "required": ["city", "unit"], "additionalProperties": False}},
    "required": ["name", "arguments"], "additionalProperties": False}
CALL_TEXT = '{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}'


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def mask_costs(tok) -> dict:
    """Per-token mask time (median, ms) and vocabulary set-up time (s) for each library present."""
    import llguidance
    import numpy as np

    ids, out = tok.encode(CALL_TEXT), {}
    t0 = time.perf_counter()
    llguidance.LLTokenizer(tok.to_str(), n_vocab=tok.vocab_size, eos_token=sorted(tok.stop_ids))  # what lmstack caches
    c = json_constraint(tok, CALL_SCHEMA)
    setup, times = time.perf_counter() - t0, []
    for t in ids:
        t1 = time.perf_counter()
        c.mask()
        times.append(time.perf_counter() - t1)
        c.accept(t)
    out["llguidance"] = {"setup_s": setup, "mask_ms_median": _median_ms(times), "mask_ms_max": max(times) * 1e3}
    try:
        import xgrammar as xgr
    except ImportError:
        return out
    t0 = time.perf_counter()
    info = xgr.TokenizerInfo([tok.hf.id_to_token(i) for i in range(tok.vocab_size)],
                             vocab_type=xgr.VocabType.BYTE_LEVEL, stop_token_ids=sorted(tok.stop_ids))
    grammar = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(CALL_SCHEMA), any_whitespace=False,
                                                            separators=(", ", ": "))
    matcher, bits = xgr.GrammarMatcher(grammar), xgr.allocate_token_bitmask(1, info.vocab_size)
    setup, times = time.perf_counter() - t0, []
    for t in ids:
        t1 = time.perf_counter()
        matcher.fill_next_token_bitmask(bits)
        np.unpackbits(bits.numpy().view(np.uint8), bitorder="little")  # the same unpacking lmstack does
        times.append(time.perf_counter() - t1)
        matcher.accept_token(t)
    out["xgrammar"] = {"setup_s": setup, "mask_ms_median": _median_ms(times), "mask_ms_max": max(times) * 1e3}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--quant", default="int4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--tasks", type=int, default=24)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--libraries", action="store_true", help="also time the mask alone in each library")
    a = ap.parse_args()
    engine = Engine.load(a.model, quant=a.quant, threads=a.threads, max_batch=1, max_seq_len=2048)
    c = cost(engine, a.rounds, a.tokens) if a.rounds else {"free_tok_s": 0.0, "constrained_tok_s": 0.0,
                                                             "overhead": float("nan"), "tokens": 0}
    print(f"decode {c['free_tok_s']:.1f} tok/s free, {c['constrained_tok_s']:.1f} constrained: "
          f"overhead {c['overhead']:.1%} (target <= 10%)")
    b = benefit(engine, a.tasks)
    print(f"tool_choice=required on {b['tasks']} tasks: valid calls {b['valid_free']:.0%} without the constraint, "
          f"{b['valid_constrained']:.0%} with it (target 100%); replies cut by the {b['max_tokens']}-token budget: "
          f"{b['cut_by_length_free']} free, {b['cut_by_length_constrained']} constrained")
    libs = mask_costs(engine.tokenizer) if a.libraries else {}
    for name, m in libs.items():
        print(f"{name}: one mask {m['mask_ms_median']:.3f} ms (median; max {m['mask_ms_max']:.2f}), "
              f"set-up {m['setup_s']:.2f} s")
    engine.close()
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"model": a.model, "quant": a.quant, "cost": c, "benefit": b,
                                      "libraries": libs}, indent=1))


if __name__ == "__main__":
    main()
