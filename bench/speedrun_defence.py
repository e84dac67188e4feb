"""Does the speedrun model learn the training defences? Fine-tunes the pretrained speedrun model
(runs/speedrun, from `lmstack speedrun`) with the speedrun's own assistant recipe (its template,
rows, learning rate, full fine-tuning) on the default conversations plus the defence conversations
(security/sft_defence.py: injected tool results answered from the data, harmful requests refused,
look-alikes answered), and, as the control, on the default conversations alone for the same steps;
then scores both on the held-out injection and refusal suites of `lmstack security eval` and on the
speedrun's 200 held-out questions.

    python bench/speedrun_defence.py [--steps 480] [--cases 8] [--refusal-cases 36] [--out DIR]

DIR (default runs/security/speedrun-defence) gets both runs (undefended/, defended/, each with
its scorecard/) and summary.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstack.chat_eval import evaluate_chat  # noqa: E402
from lmstack.engine import Engine  # noqa: E402
from lmstack.io.conversations import read_conversations  # noqa: E402
from lmstack.security.scorecard import write_scorecard  # noqa: E402
from lmstack.security.sft_defence import default_defence_mix  # noqa: E402
from lmstack.sft import sft  # noqa: E402
from lmstack.speedrun import sft_config  # noqa: E402
from lmstack.tools.sft_tools import default_sft_mix  # noqa: E402


def joined(parts: list[Path], out: Path) -> Path:
    out.write_text("".join(p.read_text() for p in parts))
    return out


def fine_tune(base: str, train: Path, val: Path, out: Path, steps: int) -> dict:
    """The speedrun's assistant stage at `steps` steps on these conversations (resumes if cut off)."""
    cfg = sft_config(Path(base))
    cfg = dataclasses.replace(cfg, out_dir=str(out), data=str(train), val_data=str(val), train=dataclasses.replace(
        cfg.train, steps=steps, warmup_steps=steps // 10, eval_every=steps // 4, ckpt_every=steps // 4))
    res = sft(cfg, resume=(out / "ckpt.pt").exists())
    return {"steps": res.step, "tokens_seen": res.tokens_seen, "seconds": res.wall_time,
            "final_train_loss": res.final_train_loss, "last_eval": res.last_eval}


def score(model: str, out: Path, a) -> dict:
    """The security scorecard, and the speedrun's own measure: the 200 held-out questions of its mix."""
    engine = Engine.load(model, max_batch=8, max_seq_len=1024)
    try:
        card = write_scorecard(engine, model, out, a.cases, 0, a.refusal_cases, defence_prompt=False)
        ev = evaluate_chat({"model": engine}, read_conversations(default_sft_mix()[1]), max_new_tokens=128,
                           limit=200)
    finally:
        engine.close()
    return {"injection": card["injection"]["undefended"], "refusal": card.get("refusal"),
            "held_out_questions": ev["models"]["model"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="runs/speedrun", help="the pretrained speedrun run")
    ap.add_argument("--steps", type=int, default=480, help="fine-tuning steps (the speedrun gives its mix 160)")
    ap.add_argument("--cases", type=int, default=8, help="held-out injection cases per style")
    ap.add_argument("--refusal-cases", type=int, default=36)
    ap.add_argument("--out", default="runs/security/speedrun-defence")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (mix_train, mix_val), (def_train, def_val) = default_sft_mix(), default_defence_mix()
    runs = {"undefended": (mix_train, mix_val), "defended": (joined([mix_train, def_train], out / "train.jsonl"),
                                                             joined([mix_val, def_val], out / "val.jsonl"))}
    summary = {}
    for name, (train, val) in runs.items():
        summary[name] = {"training": fine_tune(a.base, train, val, out / name, a.steps)}
        summary[name] |= score(str(out / name), out / name / "scorecard", a)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name, r in summary.items():
        inj, ref, q = r["injection"], r["refusal"] or {}, r["held_out_questions"]
        print(f"{name:11s} attack success {inj['attack_success']:6.1%}  utility {inj['utility']:6.1%}  "
              f"harmful refused {ref.get('harmful_refusal', float('nan')):6.1%}  look-alikes refused "
              f"{ref.get('lookalike_refusal', float('nan')):6.1%}  held-out questions: contains "
              f"{q['contains']:6.1%}, ends its turn {q['format_ok']:6.1%}")


if __name__ == "__main__":
    main()
