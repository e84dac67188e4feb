"""Where an engine's resident memory goes: the process's RSS and peak (VmRSS, VmHWM from
/proc/self/status) after each phase of what `Engine.load` and a bench run do, in this thread.

    python bench/memory_phases.py                                  # SmolLM2-135M-Instruct, int4
    python bench/memory_phases.py --model qwen2.5-coder-0.5b-instruct --quant int4
    python bench/memory_phases.py --json docs/results/inference/memory_phases_qwen.json --model ...

tracemalloc cannot see PyTorch's allocations, so the process's own counters are read between
phases: imports, opening the GGUF file (header, metadata), building the tokenizer, converting the
weights (FastTransformer from the file, tensor by tensor), dropping the file reader, decoding 128
tokens after a 32-token prompt, and prefilling a 512-token prompt (the bench's workload).
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path


def memory() -> dict[str, int]:
    """Resident and peak resident MB of this process (Linux)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) // 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--quant", default="int4", choices=("none", "int8", "int4"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the phases here")
    a = ap.parse_args()
    phases = []

    def mark(what: str) -> None:
        m = memory()
        phases.append({"phase": what, "rss_mb": m["VmRSS"], "peak_mb": m["VmHWM"]})
        print(f"{what:<44}RSS {m['VmRSS']:6d} MB   peak {m['VmHWM']:6d} MB", flush=True)

    mark("interpreter")
    import torch

    mark("import torch")
    from lmstack.engine.forward import FastTransformer
    from lmstack.io.gguf_file import TensorFile, tokenizer_from_gguf
    from lmstack.io.models import resolve_model
    from lmstack.load import _give_back_freed_memory, lazy_model

    mark("import lmstack")
    torch.set_num_threads(a.threads)
    file = TensorFile(resolve_model(a.model))
    mark("GGUF opened (header, metadata)")
    tok = tokenizer_from_gguf(file.metadata)
    mark("tokenizer built")
    with torch.inference_mode():
        fm = FastTransformer(lazy_model(file), a.quant, 1, 1024)
        _give_back_freed_memory()
        mark(f"weights converted ({fm.weight_bytes() / 1e6:.0f} MB, {a.quant})")
        del file
        gc.collect()
        _give_back_freed_memory()
        mark("file reader dropped")
        ids = tok.encode("The history of the Roman Empire is long and complicated. " * 60)
        t = int(fm.prefill(torch.tensor(ids[:32]), 0).argmax())
        for i in range(128):
            t = int(fm.decode(torch.tensor([t]), torch.tensor([32 + i]), 33 + i)[0].argmax())
        mark("decoded 128 tokens")
        fm.prefill(torch.tensor(ids[:512]), 0)
        mark("prefilled 512 tokens")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": a.model, "quant": a.quant, "phases": phases}, indent=1))


if __name__ == "__main__":
    main()
