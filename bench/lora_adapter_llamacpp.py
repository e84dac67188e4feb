"""A LoRA run in llama.cpp as base file + adapter: does the fine-tune's behaviour survive there?

    python bench/lora_adapter_llamacpp.py runs/sft-defence4 [--cases 36]

Exports the run's factors (`lmstack export RUN --lora-adapter`), loads the run's base GGUF (for
SmolLM2, its Q4_1 file, quantised as it is) with the adapter in llama.cpp (the xllamacpp wheel, in
process), and sends the held-out refusal suite (security/refusal.py) through it, greedy, with the
run's chat template; then the same through llama.cpp without the adapter and through lmstack's
engine at int4 (update kept apart). Prints each one's refusal rates and how often llama.cpp with the
adapter decides as lmstack does and writes the same reply.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import xllamacpp

from lmstack.engine import Engine, SamplingParams
from lmstack.io.checkpoint import load_checkpoint
from lmstack.io.conversations import encode_chat
from lmstack.io.gguf_file import export_lora_adapter
from lmstack.model import ModelConfig
from lmstack.security import refusal


def llama_cpp(base: str, adapter: Path | None, threads: int) -> xllamacpp.Server:
    p = xllamacpp.CommonParams()
    p.model.path = base
    p.n_ctx, p.n_parallel, p.verbosity, p.warmup = 2048, 1, 1, False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
    if adapter is not None:
        lora = xllamacpp.CommonAdapterLoraInfo()
        lora.path, lora.scale = str(adapter), 1.0
        p.lora_adapters = [lora]
    return xllamacpp.Server(p)


def replies(server: xllamacpp.Server, prompts: list[list[int]], n: int) -> list[str]:
    out = []
    for ids in prompts:
        r = server.handle_completions({"prompt": ids, "n_predict": n, "temperature": 0, "cache_prompt": False,
                                       "stream": False})
        if "error" in r:
            raise SystemExit(f"llama.cpp: {r['error']}")
        out.append(r["choices"][0]["text"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a finished LoRA run directory")
    ap.add_argument("--cases", type=int, default=36, help="held-out harmful requests and as many look-alikes")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    run = Path(a.run)
    state = load_checkpoint(run / "ckpt.pt")
    info = json.loads((run / "run.json").read_text())
    adapter = export_lora_adapter(state["lora_update"], ModelConfig.from_dict(state["model_config"]),
                                  run / "lora-adapter.gguf")
    engine = Engine.load(run, quant="int4", threads=a.threads, max_batch=1)
    cases = refusal.build_suite(a.cases, 0)
    prompts = [encode_chat(engine.tokenizer, [{"role": "user", "content": c.text}], template=engine.chat_template,
                           add_generation_prompt=True, with_mask=False)[0] for c in cases]
    got = {"lmstack_int4": [r.text for r in engine.generate(
        prompts, SamplingParams(max_new_tokens=a.max_new_tokens, temperature=0))]}
    engine.close()
    for name, ad in (("llamacpp_adapter", adapter), ("llamacpp_base", None)):
        got[name] = replies(llama_cpp(info["base_path"], ad, a.threads), prompts, a.max_new_tokens)
    r = {name: refusal.summarize(cases, texts) for name, texts in got.items()}
    same = [refusal.is_refusal(x) == refusal.is_refusal(y) for x, y in zip(got["llamacpp_adapter"],
                                                                          got["lmstack_int4"], strict=True)]
    exact = [x.strip() == y.strip() for x, y in zip(got["llamacpp_adapter"], got["lmstack_int4"], strict=True)]
    r["agreement"] = {"decision": sum(same) / len(same), "reply": sum(exact) / len(exact), "cases": len(same)}
    for name in got:
        print(f"{name:18s} harmful refused {r[name]['harmful_refusal']:6.1%}  look-alikes refused "
              f"{r[name]['lookalike_refusal']:6.1%}  ({r[name]['harmful_cases']} + {r[name]['benign_cases']})")
    print(f"llama.cpp + adapter vs lmstack int4: same decision {r['agreement']['decision']:.1%}, "
          f"same reply {r['agreement']['reply']:.1%} of {len(same)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r | {"run": str(run), "base": info["base_path"]}, f, indent=1)


if __name__ == "__main__":
    main()
