#!/usr/bin/env bash
# Reproduces docs/results/assistant/: held-out chat scores (base vs fine-tuned) for the speedrun
# model and for SmolLM2-135M-Instruct + LoRA, and the serving load test. Run from the repository root
# after `lmstack speedrun` (which leaves runs/speedrun and runs/speedrun/assistant).
set -euo pipefail
out=docs/results/assistant
mkdir -p "$out"

# 1. the speedrun model: base vs its full fine-tune, 200 held-out conversations
lmstack eval runs/speedrun/assistant --chat --max-new-tokens 48 \
    --json "$out/speedrun_chat_eval.json" --markdown "$out/speedrun_chat_eval.md"
cp runs/speedrun/assistant/run.json "$out/speedrun_sft_run.json"
cp runs/speedrun/assistant/metrics.jsonl "$out/speedrun_sft_metrics.jsonl"

# 2. SmolLM2-135M-Instruct: a short LoRA run on the default conversations, then base vs LoRA
lmstack sft --base smollm2-135m-instruct --lora --lora-rank 8 --lora-alpha 16 --lora-targets wq,wv \
    --out runs/smol-lora --steps 16 --batch-size 4 --seq-len 192 --lr 2e-3 --warmup-steps 2 \
    --eval-every 16 --eval-batches 2 --log-every 2 --overwrite
lmstack eval runs/smol-lora --chat --limit 100 --max-new-tokens 32 \
    --json "$out/smollm2_lora_chat_eval.json" --markdown "$out/smollm2_lora_chat_eval.md"
cp runs/smol-lora/run.json "$out/smollm2_lora_run.json"
cp runs/smol-lora/metrics.jsonl "$out/smollm2_lora_metrics.jsonl"

# 3. serving: 32 concurrent streaming clients vs one
python bench/serve_load.py --model runs/speedrun --json "$out/serve_load.json"
