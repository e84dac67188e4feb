"""How far a fine-tune moved a model's weights, against how far quantising them moves them again.

    python bench/lora_quant_error.py smollm2-135m-instruct runs/sft-defence4 [--speed]

A merged LoRA changes every matrix a little; the engine's int8 and int4 re-quantise the merged
matrices. When the rounding is as large as the fine-tune's change, what the fine-tune taught is
partly rounded away (docs/security.md measures what that does to a security LoRA). Prints, over
every layer matrix, the root mean square of the fine-tune's change and of each quantisation's
error (the quantised matrix as PyTorch's kernels multiply by it, read back through an identity),
and, for a run that keeps its LoRA factors, the error of what the engine runs at int4: the base
(merged - B·A) rounded, with B·A added back in float. With --speed, also what keeping B·A apart
costs: int4 decode steps of the same model with and without it, alternated, medians.
"""

from __future__ import annotations

import argparse
import json
import os

import torch


def rms_ratio(base: str, tuned: str) -> dict:
    from lmstack.engine.quant import QLinear
    from lmstack.io.models import resolve_model
    from lmstack.load import load_model, lora_update_of

    os.environ["LMSTACK_KERNELS"] = "torch"  # the same kernels on every CPU
    sb = load_model(resolve_model(base, quiet=True))[0].state_dict()
    st = load_model(tuned)[0].state_dict()
    update = lora_update_of(tuned) or {}
    sums = {"change": 0.0, "int8": 0.0, "int4": 0.0, **({"int4_update_apart": 0.0} if update else {})}
    n = 0
    with torch.no_grad():
        for k, w in st.items():
            if not (k.endswith(".weight") and w.dim() == 2 and "layers." in k):
                continue
            sums["change"] += (w - sb[k]).double().pow(2).sum().item()
            eye = torch.eye(w.shape[1])
            for quant in ("int8", "int4"):
                sums[quant] += (QLinear(w, quant)(eye).t() - w).double().pow(2).sum().item()
            if f"{k[:-7]}.a" in update:
                a, b = update[f"{k[:-7]}.a"], update[f"{k[:-7]}.b"]
                kept = QLinear(w - b @ a, "int4", low_rank=(a, b))(eye).t()
                sums["int4_update_apart"] += (kept - w).double().pow(2).sum().item()
            elif update:
                sums["int4_update_apart"] += (QLinear(w, "int4")(eye).t() - w).double().pow(2).sum().item()
            n += w.numel()
    rms = {k: (v / n) ** 0.5 for k, v in sums.items()}
    return {"base": base, "tuned": tuned, "weights": n, "rms": rms,
            **{f"change_over_{q}_error": rms["change"] / rms[q] for q in rms if q != "change"}}


def decode_speed(tuned: str, tokens: int = 64, repeats: int = 5) -> dict:
    """Tokens per second of int4 decode steps (batch 1, eager), the update kept apart and not."""
    import statistics
    import time

    from lmstack.engine.forward import FastTransformer
    from lmstack.load import load_model, lora_update_of

    model = load_model(tuned)[0]
    models = {"merged": FastTransformer(model, "int4", 1, 256),
              "update_apart": FastTransformer(model, "int4", 1, 256, low_rank=lora_update_of(tuned))}
    rates: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for _ in range(repeats):
            for k, m in models.items():
                m.prefill(torch.tensor([1, 2, 3]), 0)
                t = time.perf_counter()
                for j in range(3, 3 + tokens):
                    m.decode(torch.tensor([j]), torch.tensor([j]), j + 1)
                rates[k].append(tokens / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"tok_s": med, "ratio": med["update_apart"] / med["merged"], "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the base model (a name, .gguf or run directory)")
    ap.add_argument("tuned", help="the fine-tuned run directory (LoRA merged)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--speed", action="store_true", help="also time int4 decoding with the update apart and not")
    a = ap.parse_args()
    r = rms_ratio(a.base, a.tuned)
    print(f"{r['weights']:,} layer weights; rms of the fine-tune's change {r['rms']['change']:.2e}, of int8's error "
          f"{r['rms']['int8']:.2e}, of int4's error {r['rms']['int4']:.2e}")
    print(f"change / int8 error = {r['change_over_int8_error']:.2f}; change / int4 error = "
          f"{r['change_over_int4_error']:.2f}")
    if "int4_update_apart" in r["rms"]:
        print(f"int4 with the LoRA update kept apart in float: rms error {r['rms']['int4_update_apart']:.2e}, "
              f"change / error = {r['change_over_int4_update_apart_error']:.2f}")
    if a.speed:
        r["decode"] = d = decode_speed(a.tuned)
        print(f"int4 decode, {d['threads']} threads: merged {d['tok_s']['merged']:.1f} tok/s, update apart "
              f"{d['tok_s']['update_apart']:.1f} tok/s ({d['ratio']:.2f}x)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
