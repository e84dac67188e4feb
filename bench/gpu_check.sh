#!/usr/bin/env bash
# GPU check: the speedrun at GPU scale. A ~107M-parameter Llama (the `medium` preset with 16 layers,
# 8,192-token BPE) trained on Shakespeare at sequence length 1024 with bf16 autocast, TF32, fused
# AdamW, flash attention and torch.compile, for a fixed number of steps. Prints tokens/s, MFU against
# this GPU's own bf16 matmul peak (measured in the same run), peak memory and the final loss.
# Target (H100): MFU >= 40%. Sized to finish well within 5 minutes on one H100 (an estimate: this
# script has not been run on a GPU yet; record its output in docs/scaling-out.md when it has).
#
#   bash bench/gpu_check.sh                        # one GPU
#   NPROC=8 bash bench/gpu_check.sh                # every GPU of this node: torchrun + DDP
#   STEPS=600 BATCH=16 bash bench/gpu_check.sh     # other sizes
#
# It runs from the source tree (PYTHONPATH), so a machine with a CUDA PyTorch needs only numpy,
# tokenizers, jinja2, tqdm and matplotlib besides. With no internet, bring the corpus cache along:
# copy ~/.cache/lmstack/corpora to DIR on that machine and set LMSTACK_CACHE=DIR, or set DATA to
# your own .txt/.jsonl/.parquet files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STEPS=${STEPS:-300}
BATCH=${BATCH:-32}
NPROC=${NPROC:-1}
DATA=${DATA:-shakespeare}
OUT=${OUT:-runs/gpu_check}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

echo "== preflight"
"$PY" - <<'EOF'
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from lmstack.train.flops import measure_matmul_peak

if not torch.cuda.is_available():
    raise SystemExit("gpu_check: no CUDA device visible to PyTorch")
print(f"torch {torch.__version__}, {torch.cuda.device_count()} x {torch.cuda.get_device_name()}")
peak = max(measure_matmul_peak("cuda", n, seconds=0.5, dtype=torch.bfloat16) for n in (4096, 8192))
print(f"bf16 matmul peak {peak / 1e12:.0f} TFLOP/s (the MFU denominator, measured now)")
# the model's attention call: 12 query heads, 4 key/value heads, head size 64, causal
q = torch.randn(2, 12, 1024, 64, device="cuda", dtype=torch.bfloat16)
k = torch.randn(2, 4, 1024, 64, device="cuda", dtype=torch.bfloat16)
try:
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        F.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=True)
    print("flash attention: used for grouped-query causal attention")
except RuntimeError as e:
    print(f"flash attention: NOT available for this call, PyTorch falls back ({str(e).splitlines()[0]})")
EOF

args=(train --data "$DATA" --vocab-size 8192 --preset medium --n-layers 16 --max-seq-len 1024
      --batch-size "$BATCH" --grad-accum 1 --steps "$STEPS" --lr 1e-3 --warmup-steps 30 --schedule cosine
      --eval-every "$STEPS" --eval-batches 8 --ckpt-every 0 --log-every 20 --sample-every 0
      --device cuda --compile --overwrite --out "$OUT")
echo "== training: ${args[*]}"
start=$(date +%s)
if [ "$NPROC" -gt 1 ]; then
  "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m lmstack "${args[@]}"
else
  "$PY" -m lmstack "${args[@]}"
fi
echo "wall time (tokenizer, data, compile, training, checkpoint): $(( $(date +%s) - start )) s"

echo "== summary"
"$PY" - "$OUT" <<'EOF'
import json
import statistics
import sys
from pathlib import Path

run = Path(sys.argv[1])
rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
train = [r for r in rows if "tok_s" in r]
steady = train[1:] or train  # the first interval holds the compilation
val = [r for r in rows if "val_loss" in r]
info = json.loads((run / "run.json").read_text())
mfu = statistics.median(r["mfu"] for r in steady)
print(f"model          {info['params'] / 1e6:.1f}M parameters, seq {info['model_config']['max_seq_len']}, "
      f"{info['world_size']} GPU(s)")
print(f"tokens/s       {statistics.median(r['tok_s'] for r in steady):,.0f}  (median of {len(steady)} log intervals)")
print(f"MFU            {mfu:.1%}  of the measured bf16 matmul peak  (target >= 40%: {'met' if mfu >= 0.4 else 'MISSED'})")
print(f"peak memory    {max(r.get('mem_gib', 0.0) for r in train):.1f} GiB per GPU")
print(f"final loss     {train[-1]['loss']:.3f} at step {train[-1]['step']}"
      + (f", val loss {val[-1]['val_loss']:.3f}, val bpb {val[-1]['val_bpb']:.3f}" if val else ""))
EOF
