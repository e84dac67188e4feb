"""Can the speedrun model learn one tool task if it trains on nothing else? Fine-tunes the pretrained
speedrun model (runs/speedrun, from `lmstack speedrun`) on one family of the default sft-mix's tasks,
for many more steps than the speedrun gives its whole mix, then scores the held-out questions of the
same tasks without and with the calculator and search.

    python bench/speedrun_tool_focus.py arithmetic [--steps 300] [--json out.json]
    python bench/speedrun_tool_focus.py search [--steps 200] [--json out.json]

`arithmetic`: the curated arithmetic questions and the calculator conversations (1 to 12 digits);
`search`: the Shakespeare questions answered through `search` (which play, who says it, next line).
Everything else is the speedrun's fine-tuning stage (its template with the one-line tool prompt,
learning rate, full fine-tuning), so the result says whether the skill is within this model's reach.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstack.chat_eval import evaluate_chat, markdown_report  # noqa: E402
from lmstack.engine import Engine  # noqa: E402
from lmstack.io.conversations import read_conversations  # noqa: E402
from lmstack.load import load_model  # noqa: E402
from lmstack.sft import sft  # noqa: E402
from lmstack.speedrun import SPEEDRUN_TOOLS, sft_config  # noqa: E402
from lmstack.tools.builtin import builtin_tools  # noqa: E402
from lmstack.tools.sft_tools import default_sft_mix  # noqa: E402

FAMILIES = {  # tasks, row length, batch (rows of a step hold about 4,096 tokens either way)
    "arithmetic": ({"arithmetic", "calculator", "calc_add_12", "calc_mul_4x4"}, 256, 16),
    "search": ({"search_speaker", "search_play", "search_next_line"}, 512, 8),
}


def subset(src: Path, tasks: set[str], out: Path) -> Path:
    rows = [ln for ln in src.read_text().splitlines() if json.loads(ln)["meta"].get("task") in tasks]
    out.write_text("\n".join(rows) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("family", choices=sorted(FAMILIES))
    ap.add_argument("--base", default="runs/speedrun", help="the pretrained speedrun run")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--json", help="write the evaluation here")
    a = ap.parse_args()
    tasks, seq_len, batch = FAMILIES[a.family]
    train_src, val_src = default_sft_mix()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = sft_config(Path(a.base))
        cfg = dataclasses.replace(
            cfg, data=str(subset(train_src, tasks, tmp / "train.jsonl")), out_dir=str(tmp / "run"), seq_len=seq_len,
            val_data=str(subset(val_src, tasks, tmp / "val.jsonl")),
            train=dataclasses.replace(cfg.train, steps=a.steps, batch_size=batch, warmup_steps=a.steps // 10,
                                      eval_every=a.steps, log_every=50))
        res = sft(cfg, overwrite=True)
        model, tok, _ = load_model(cfg.out_dir)
        engine = Engine(model, tok, max_batch=16)
        result = evaluate_chat({a.family: engine}, read_conversations(cfg.val_data), a.max_new_tokens,
                               tools=builtin_tools(SPEEDRUN_TOOLS, "shakespeare"), progress=True)
        engine.close()
    result["training"] = {"family": a.family, "tasks": sorted(tasks), "steps": res.step,
                          "tokens_seen": res.tokens_seen, "seconds": res.wall_time}
    print(markdown_report(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
