"""The tool-use LoRA's training file: the tool families SmolLM2 is held to, capped per family, without
any question that the held-out file asks (docs/tools.md).

    python bench/tool_mix_filter.py runs/tool-mix3 runs/tool-mix-eval/val.jsonl   # writes train_targets.jsonl
"""

import argparse
import collections
import json
from pathlib import Path

CAPS = {"function_call": 600, "no_fit": 600, "letters": 300, "calc_mul_4x4": 150, "calc_add_12": 60,
        "calculator": 100, "no_tool": 120}


def user_turns(record: dict) -> str:
    return json.dumps([m["content"] for m in record["messages"] if m["role"] == "user"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mix", type=Path, help="a folder written by lmstack data sft-mix")
    ap.add_argument("held_out", type=Path, help="the held-out conversations the LoRA is scored on")
    a = ap.parse_args()
    held = {user_turns(json.loads(line)) for line in a.held_out.open()}
    kept = collections.Counter()
    with (a.mix / "train_targets.jsonl").open("w") as out:
        for line in (a.mix / "train.jsonl").open():
            r = json.loads(line)
            task = r["meta"]["task"]
            if task in CAPS and kept[task] < CAPS[task] and user_turns(r) not in held:
                kept[task] += 1
                out.write(line)
    print(f"{sum(kept.values())} conversations -> {a.mix / 'train_targets.jsonl'}: {dict(kept)}")


if __name__ == "__main__":
    main()
