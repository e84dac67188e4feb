"""`lmstack speedrun`: the whole pipeline on the embedded default, start to finish.

Fetch Shakespeare, train a tokenizer, pretrain a small Llama, evaluate it against gzip/bzip2/xz,
export the GGUF parameters file and sample from it with the numpy run file; then fine-tune it on the
default conversations into an assistant and show both answering the same questions. The default is sized to
finish in under ten minutes on two CPU cores; --quick is a one-minute smoke run for tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lmstack.evaluate import evaluate_model, format_report
from lmstack.io.chat_template import CHATML_TEMPLATE
from lmstack.io.gguf_file import export_gguf
from lmstack.load import load_model
from lmstack.pretrain import DataConfig, PretrainConfig, pretrain
from lmstack.sft import SFTConfig, sft
from lmstack.train.loop import TrainConfig

SAMPLE_PROMPTS = ["ROMEO:\n", "First Citizen:\n"]
# Asked of the pretrained model and of the assistant fine-tuned from it, side by side.
CHAT_QUESTIONS = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "user", "content": "What is 12 + 7?"}],
    [{"role": "user", "content": "What is 6 x 8?"}],
    [{"role": "user", "content": 'Who says this line in Hamlet?\n"To be, or not to be: that is the question:"'}],
    [{"role": "user", "content": "Which play is this passage from?\n\nO Romeo, Romeo! wherefore art thou Romeo?"}],
    [{"role": "user", "content": "What is 20 + 5?"}, {"role": "assistant", "content": "20 + 5 = 25."},
     {"role": "user", "content": "And if you add 3 to that?"}],
]


def speedrun_config(out_dir: str, quick: bool = False, device: str = "auto") -> PretrainConfig:
    if quick:
        return PretrainConfig(
            out_dir=out_dir, data=DataConfig("shakespeare", vocab_size=512), preset="nano",
            model_overrides=dict(max_seq_len=128),
            train=TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=10, eval_every=30,
                              eval_batches=4, ckpt_every=30, device=device),
        )
    # Sized by measurement: at this compute (~4e13 FLOPs) a 1M-parameter model that sees ~5M tokens
    # (3 epochs) beats a 3M one that sees 2M at the same wall time (see docs/speedrun.md).
    return PretrainConfig(
        out_dir=out_dir, data=DataConfig("shakespeare", vocab_size=2048), preset="micro",
        model_overrides=dict(max_seq_len=256),
        train=TrainConfig(steps=1200, batch_size=16, lr=3e-3, warmup_steps=60, eval_every=200,
                          eval_batches=8, ckpt_every=200, sample_every=400, device=device),
    )


def run_samples(gguf_path: Path, prompts: list[str], n: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """Continue each prompt with the standalone numpy run file: the two files, working together."""
    from lmstack import run as runfile

    m = runfile.load(str(gguf_path))
    out = []
    for p in prompts:
        t = time.perf_counter()
        ids = list(runfile.generate(m, m.tokenizer.encode(p), n, temperature=0.8, top_k=50, top_p=0.95, seed=seed))
        out.append((p, m.tokenizer.decode(ids), len(ids) / max(time.perf_counter() - t, 1e-9)))
    return out


def _compact_tools_template() -> str:
    """ChatML with tools shown as one line, `Tools: calculator(expression), search(query, k)`, in place
    of the Hermes preamble and JSON schemas (~500 tokens of this model's 2,048-token vocabulary, more
    than its whole context). Calls and results keep the Hermes format, so the parser and every other
    runtime read them unchanged; the template goes into run.json and GGUF with the model."""
    start = CHATML_TEMPLATE.index("You may call one or more functions")
    end = CHATML_TEMPLATE.index("{% set skip_first")
    line = ("Tools: {% for tool in tools %}{{ tool.function.name }}({{ tool.function.parameters.properties | "
            "list | join(', ') }}){{ ', ' if not loop.last else '' }}{% endfor %}<|im_end|>\n")
    return CHATML_TEMPLATE[:start] + line + CHATML_TEMPLATE[end:]


COMPACT_TOOLS_TEMPLATE = _compact_tools_template()
SPEEDRUN_TOOLS = "calculator,search"  # the assistant's tools in the held-out evaluation, over Shakespeare


def sft_config(run_dir: Path, quick: bool = False, device: str = "auto") -> SFTConfig:
    """The fine-tuning stage: full fine-tuning on the default conversations, about a minute on 2 cores.
    Rows are 512 tokens (the context is extended from 256: a search result needs the room), 8 to a
    batch, so a step costs about what a pretraining step of 16 x 256 costs."""
    steps = 20 if quick else 160
    return SFTConfig(base=str(run_dir), data="sft-mix", out_dir=str(run_dir / "assistant"),
                     seq_len=256 if quick else 512, chat_template=COMPACT_TOOLS_TEMPLATE, train=TrainConfig(
        steps=steps, batch_size=16 if quick else 8, lr=1e-3, warmup_steps=steps // 10, weight_decay=0.0,
        eval_every=steps, eval_batches=4, ckpt_every=0, log_every=10, device=device))


def assistant_stage(run_dir: Path, quick: bool = False, device: str = "auto") -> dict:
    """Fine-tune the pretrained model into an assistant; show both answering the same questions."""
    from lmstack.chat_eval import evaluate_chat, side_by_side, write_results
    from lmstack.engine import Engine
    from lmstack.io.conversations import read_conversations
    from lmstack.tools.builtin import builtin_tools
    from lmstack.tools.sft_tools import default_sft_mix

    t0 = time.perf_counter()
    print("\n=== fine-tuning into an assistant (lmstack sft on the default conversations) ===")
    cfg = sft_config(run_dir, quick, device)
    res = sft(cfg, overwrite=True)
    sft_dir = Path(cfg.out_dir)
    tuned, tok, _ = load_model(sft_dir)
    gguf_path = export_gguf(tuned, tok, sft_dir / "model.gguf", "f32", name=f"lmstack-{run_dir.name}-assistant")
    base, base_tok, _ = load_model(run_dir)
    engines = {"base": Engine(base, base_tok, max_batch=16), "assistant": Engine(tuned, tok, max_batch=16)}
    print("\nthe same questions, base model vs assistant (greedy):")
    print(side_by_side(engines, CHAT_QUESTIONS, 24 if quick else 64))
    # the held-out curated questions (the tool-use ones follow them in the file), and the assistant
    # answers them a second time with the calculator and search over the plays; 128 tokens, since a
    # call alone takes 40-60 of this vocabulary's tokens (48 cut 94% of the calls, docs/tools.md)
    held_out = read_conversations(default_sft_mix()[1])
    tools = builtin_tools(SPEEDRUN_TOOLS, "shakespeare")
    ev = evaluate_chat(engines, held_out, max_new_tokens=24 if quick else 128, limit=40 if quick else 200,
                       tools=tools, tool_models=["assistant"])
    write_results(ev, sft_dir / "chat_eval.json", sft_dir / "chat_eval.md")
    m = {name.replace("+", "_"): v for name, v in ev["models"].items()}
    return {"steps": res.step, "trained_tokens": res.tokens_seen, "train_seconds": res.wall_time,
            "held_out": ev["n"], "gguf": str(gguf_path), "stage_seconds": time.perf_counter() - t0,
            **{f"{k}_{name}": m[name][k] for name in m for k in ("exact", "contains", "format_ok")}}


def speedrun(out_dir: str = "runs/speedrun", quick: bool = False, device: str = "auto") -> dict:
    t0 = time.perf_counter()
    cfg = speedrun_config(out_dir, quick, device)
    res = pretrain(cfg, overwrite=True)
    run_dir = Path(out_dir)
    model, tok, info = load_model(run_dir)
    gguf_path = export_gguf(model, tok, run_dir / "model.gguf", "f32", name=f"lmstack-{run_dir.name}")
    print("evaluating on the whole held-out split ...")
    ev = evaluate_model(model, tok, info["data_dir"], device=device)
    (run_dir / "eval.json").write_text(json.dumps(ev, indent=1))
    print(format_report(ev))
    samples = run_samples(gguf_path, SAMPLE_PROMPTS, 40 if quick else 120)
    for prompt, text, _ in samples:
        print(f"\n--- sample (numpy run file) ---\n{prompt}{text}")
    assistant = assistant_stage(run_dir, quick, device)
    summary = {
        "params": info["params"], "params_non_embedding": info["params_non_embedding"],
        "tokens_seen": res.tokens_seen, "steps": res.step, "train_seconds": res.wall_time,
        "train_tokens_per_s": res.tokens_per_s, "mfu": res.mfu,
        "val_bpb": ev["val_bpb"], "xz_bpb": ev["compressors"]["xz -9e"],
        "runfile_tokens_per_s": sum(s[2] for s in samples) / len(samples),
        "assistant": assistant,
        "wall_seconds": time.perf_counter() - t0,
        "files": {"run": str(run_dir), "gguf": str(gguf_path), "metrics": str(run_dir / "metrics.jsonl"),
                  "loss_plot": str(run_dir / "loss.png")},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n=== speedrun summary ===")
    n, ne = summary["params"] / 1e6, summary["params_non_embedding"] / 1e6
    print(f"parameters      {n:.2f}M ({ne:.2f}M non-embedding)")
    print(f"tokens seen     {summary['tokens_seen']:,} in {res.step} steps "
          f"({summary['train_tokens_per_s']:,.0f} tok/s, MFU {summary['mfu']:.0%})")
    print(f"val bits/byte   {summary['val_bpb']:.3f}   (xz -9e: {summary['xz_bpb']:.3f})")
    print(f"run file        {summary['runfile_tokens_per_s']:.0f} tokens/s decode (numpy)")
    a = assistant
    print(f"assistant       {a['steps']} fine-tuning steps in {a['stage_seconds']:.0f} s; {a['held_out']} held-out "
          f"questions, contains-match {a['contains_base']:.0%} -> {a['contains_assistant']:.0%} "
          f"({a['contains_assistant_tools']:.0%} with tools), ends its turn {a['format_ok_base']:.0%} -> "
          f"{a['format_ok_assistant']:.0%} ({a['format_ok_assistant_tools']:.0%} with tools)")
    print(f"wall time       {summary['wall_seconds']:.0f} s")
    print(f"files           {run_dir}/  (model.gguf, ckpt.pt, metrics.jsonl, loss.png, eval.json)")
    print(f"next            python lmstack/run.py {gguf_path} \"ROMEO:\"")
    print(f"                lmstack chat --model {run_dir / 'assistant'} --tools {SPEEDRUN_TOOLS} --docs shakespeare")
    print(f"                lmstack serve --model {run_dir / 'assistant'}")
    return summary
