"""lmstack vision train: a VLM in a run directory, in three stages through the one training loop.

  stage0/  the language model learns the text of the task (captions, questions, answers) without
           images, so it has words to say; skipped when a real base model is given
  stage1/  captions with the language model frozen: only the encoder and projector learn (only the
           projector when the encoder comes trained from another run, --encoder)
  stage2/  visual question answering (and captions) with SFT's rule (assistant tokens only): the
           whole model, or LoRA on the language side of a real base model (merged at the end)

Each stage is an ordinary run (ckpt.pt, metrics.jsonl, loss.png, progress bar) and resumes where
it stopped; a finished stage is not repeated. The result is vlm.pt (weights + config), run.json
and tokenizer.json at the top of the run directory.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from lmstack.checks import ConfigError, check_float, check_int
from lmstack.errors import LmstackError
from lmstack.io.checkpoint import load_checkpoint, save_checkpoint
from lmstack.io.conversations import Conversation
from lmstack.io.files import write_json
from lmstack.io.packing import ConversationBatches
from lmstack.io.tokenizer import Tokenizer, train_tokenizer
from lmstack.model import Transformer, preset
from lmstack.train.loop import TrainConfig, TrainResult, resolve_device, train
from lmstack.train.lora import LoRAConfig, apply_lora, merge_lora
from lmstack.vision.data import SCENES, VisionData, build_data
from lmstack.vision.encoder import VisionConfig
from lmstack.vision.rows import ImageRows, chat, pairs
from lmstack.vision.vlm import IMAGE_PAD, VLM, VLMConfig, add_image_tokens


def _stage(steps: int, batch: int, lr: float, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_steps=min(50, steps // 10), weight_decay=0.0,
                       eval_every=max(steps // 4, 1), eval_batches=4, ckpt_every=max(steps // 4, 1),
                       log_every=10, **kw)


DEFAULT_STEPS = {"stage0": 300, "stage1": 600, "stage2": 18000}
DEFAULT_MIX = {"digit": 2, "shape": 1, "count": 2, "text": 3}  # reading and counting need the most rows
DEFAULT_LR = {"stage0": 3e-3, "stage1": 2e-3, "stage2": 2e-3}


def stage_config(steps: dict[str, int] | None = None, batch: int = 32, device: str = "auto") -> dict[str, TrainConfig]:
    """Each stage's TrainConfig: the default steps unless given."""
    steps = {**DEFAULT_STEPS, **(steps or {})}
    return {k: _stage(steps[k], batch, DEFAULT_LR[k], device=device) for k in DEFAULT_STEPS}


@dataclass
class VisionTrainConfig:
    out_dir: str = "runs/vlm"
    base: str | None = None  # None: a small language model trained here (stage 0); else a model to adapt
    vision: VisionConfig = field(default_factory=VisionConfig)
    # a finished vision run whose trained encoder this one starts from (the same VisionConfig): a real
    # base then learns only to read it, as SmolVLM starts from a pretrained SigLIP; None: from scratch
    encoder: str | None = None
    lm_preset: str = "nano"
    vocab_size: int = 400
    # 0: room for the longest caption beside both views' image tokens: 64 for the small model at 4 tokens
    # a view, 128 for a real base (its template adds a system prompt)
    seq_len: int = 0
    n_train: int = 3000  # generated training scenes of each kind, times mix[kind] (digits: the bundled set)
    # how many times n_train of each kind, the bundled digits repeated mix["digit"] times (data.build_data)
    mix: dict = field(default_factory=lambda: dict(DEFAULT_MIX))
    n_val: int = 300
    # every epoch after the first draws new scenes (data.build_data): more distinct images, same mix
    fresh_scenes: bool = True
    digit_shift: int = 0  # with fresh_scenes: pixels each fresh epoch moves a training digit, at most
    numbers: float = 0.5  # the training text scenes' share of numbers (data.build_data)
    max_digits: int = 2  # the training numbers' longest (data.text_scene; held-out: 0-99)
    # stage 2's batches hold an image's questions side by side, so it is encoded once (rows.ImageRows):
    # a cheaper step, but fewer images a step (measured in docs/vision.md)
    group_images: bool = False
    seed: int = 0
    lora: LoRAConfig | None = None  # for a real base: LoRA on the language side in stage 2
    stage0: TrainConfig = field(default_factory=lambda: stage_config()["stage0"])
    stage1: TrainConfig = field(default_factory=lambda: stage_config()["stage1"])
    stage2: TrainConfig = field(default_factory=lambda: stage_config()["stage2"])

    def __post_init__(self) -> None:
        check_int("seq_len", self.seq_len, 0)
        if self.seq_len == 0:
            self.seq_len = (56 if self.base is None else 120) + 2 * self.vision.tokens_per_view
        check_int("vocab_size", self.vocab_size, 1)
        check_int("n_train", self.n_train, 1)
        check_int("n_val", self.n_val, 1)
        check_int("digit_shift", self.digit_shift, 0)
        check_float("numbers", self.numbers, 0.5, 1)
        check_int("max_digits", self.max_digits, 2, 4)
        if self.digit_shift and not self.fresh_scenes:
            raise ConfigError("digit_shift moves the digits of fresh epochs: it needs fresh_scenes")
        for kind, times in self.mix.items():
            if kind not in ("digit", *SCENES):
                raise ConfigError(f"mix: unknown kind {kind!r} (digit, {', '.join(SCENES)})")
            check_int(f"mix[{kind}]", times, 1)
        if self.base is not None and not (isinstance(self.base, str) and self.base):
            raise ConfigError(f"base must name a model, got {self.base!r}")


def task_texts(data: VisionData) -> list[str]:
    """Everything the model will read or say, for the tokenizer; "\\n\\n" alone so it becomes one token
    (llama.cpp looks it up as a single token of the image layout)."""
    texts = [t for s in data.train for p in pairs(s, True, True) for t in p]
    return texts + ["\n\n", "\n"] * (len(texts) // 4) + ["<__media__>\n"] * 50


def default_tokenizer(data: VisionData, vocab_size: int) -> Tokenizer:
    return add_image_tokens(train_tokenizer(task_texts(data), vocab_size))


def text_conversations(samples) -> list[Conversation]:
    """Each distinct (question, answer) once, without an image: the language of the task."""
    seen = dict.fromkeys((q, a) for s in samples for q, a in pairs(s, True, True))
    return [Conversation(chat(q, a, image=False)) for q, a in seen]


def _grow_vocab(lm: Transformer, n: int) -> Transformer:
    """The same model with its vocabulary grown to n (new rows: the mean embedding)."""
    cfg = lm.config
    if n <= cfg.vocab_size:
        return lm
    new = Transformer(replace(cfg, vocab_size=n))
    sd = lm.state_dict()
    emb = sd["tok_embeddings.weight"]
    sd["tok_embeddings.weight"] = torch.cat([emb, emb.mean(0, keepdim=True).expand(n - len(emb), -1)])
    if cfg.tie_embeddings:
        sd.pop("output.weight", None)  # the same tensor as the embedding
    else:
        out = sd["output.weight"]
        sd["output.weight"] = torch.cat([out, out.mean(0, keepdim=True).expand(n - len(out), -1)])
    new.load_state_dict({k: v for k, v in sd.items() if not k.startswith("rope_")}, strict=False)
    return new


def build_model(cfg: VisionTrainConfig, data: VisionData) -> tuple[VLM, Tokenizer, str | None]:
    """The VLM before training, its tokenizer and the chat template to keep (a real base's own)."""
    torch.manual_seed(cfg.seed)
    if cfg.base is None:
        tok = default_tokenizer(data, cfg.vocab_size)
        lm = Transformer(preset(cfg.lm_preset, vocab_size=tok.vocab_size, max_seq_len=max(128, cfg.seq_len)))
        template = None
    else:
        from lmstack.sft import open_base

        lm, tok, _, _ = open_base(cfg.base)
        template = tok.chat_template
        tok = add_image_tokens(tok)
        lm = _grow_vocab(lm, tok.vocab_size)
        if cfg.seq_len > lm.config.max_seq_len:
            raise LmstackError(f"seq_len {cfg.seq_len} exceeds the base model's context {lm.config.max_seq_len}")
    vlm = VLM(VLMConfig(cfg.vision, lm.config, tok.special(IMAGE_PAD)), lm)
    if cfg.encoder is not None:
        vision, weights = trained_encoder(cfg.encoder)
        if vision != cfg.vision:
            raise ConfigError(f"the encoder of {cfg.encoder} is {vision}, not this run's {cfg.vision}")
        vlm.encoder.load_state_dict(weights)
    return vlm, tok, template


def trained_encoder(run_dir: str | Path) -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """(VisionConfig, encoder weights) of a finished vision run, for another run to start from."""
    path = Path(run_dir) / "vlm.pt"
    if not path.exists():
        raise LmstackError(f"{run_dir} is not a finished vision run (no vlm.pt): its encoder cannot be reused")
    state = load_checkpoint(path)
    vision = VLMConfig.from_dict(state["model_config"]).vision
    return vision, {k.removeprefix("encoder."): v for k, v in state["model"].items() if k.startswith("encoder.")}


def _run_stage(name: str, model, data, tc: TrainConfig, run_dir: Path, tok: Tokenizer, progress: bool) -> TrainResult:
    out = run_dir / name
    resume = (out / "ckpt.pt").exists()
    if progress:
        print(f"{name}: {'resuming' if resume else 'starting'} ({tc.steps} steps)")
    res = train(model, data, tc, out, token_bytes=tok.token_byte_lengths(), resume=resume, progress=progress)
    if res.interrupted:
        raise KeyboardInterrupt
    return res


def train_vlm(cfg: VisionTrainConfig, progress: bool = True) -> dict:
    """Run the stages that are not done yet; returns what run.json records."""
    run_dir = Path(cfg.out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise LmstackError(f"--out {run_dir} is a file, not a run directory")
    for tc in (cfg.stage0, cfg.stage1, cfg.stage2):
        resolve_device(tc.device)
    t0 = time.perf_counter()
    data = build_data(cfg.vision.image_size, cfg.seed, cfg.n_train, cfg.n_val, mix=cfg.mix,
                      fresh=cfg.fresh_scenes, digit_shift=cfg.digit_shift, numbers=cfg.numbers,
                      max_digits=cfg.max_digits)
    vlm, tok, template = build_model(cfg, data)
    if template:
        tok.chat_template = template
    run_dir.mkdir(parents=True, exist_ok=True)
    tok.save(run_dir / "tokenizer.json")
    if progress:
        enc = sum(p.numel() for p in vlm.encoder.parameters())
        print(f"data: {len(data.train)} train / {len(data.val)} held-out images; model: "
              f"{vlm.num_params() / 1e6:.2f}M parameters ({enc / 1e6:.2f}M encoder), "
              f"{2 * cfg.vision.tokens_per_view} image tokens per image")
    results = {}
    if cfg.base is None:
        text = ConversationBatches(tok, text_conversations(data.train), text_conversations(data.val), cfg.seq_len,
                                   cfg.stage0.batch_size, seed=cfg.seed)
        results["stage0"] = _run_stage("stage0", vlm.lm, text, cfg.stage0, run_dir, tok, progress)
    # stage 1 learns the projector and, unless it comes trained, the encoder
    for p in list(vlm.lm.parameters()) + (list(vlm.encoder.parameters()) if cfg.encoder else []):
        p.requires_grad_(False)
    captions = ImageRows(tok, cfg.vision, data.train, data.val, cfg.seq_len, cfg.stage1.batch_size, cfg.seed,
                         captions=True, questions=False, redraw=data.redraw)
    results["stage1"] = _run_stage("stage1", vlm, captions, cfg.stage1, run_dir, tok, progress)
    if cfg.lora is not None:
        apply_lora(vlm.lm, cfg.lora)
        for p in list(vlm.encoder.parameters()) + list(vlm.projector.parameters()):
            p.requires_grad_(True)
    else:
        for p in vlm.parameters():
            p.requires_grad_(True)
    vqa = ImageRows(tok, cfg.vision, data.train, data.val, cfg.seq_len, cfg.stage2.batch_size, cfg.seed + 1,
                    redraw=data.redraw, group_images=cfg.group_images)
    results["stage2"] = _run_stage("stage2", vlm, vqa, cfg.stage2, run_dir, tok, progress)
    if cfg.lora is not None:
        merge_lora(vlm.lm)
    save_vlm(vlm, run_dir)
    info = {"kind": "vlm", "base": cfg.base, "encoder_from": cfg.encoder, "chat_template": template,
            "seq_len": cfg.seq_len,
            "seed": cfg.seed, "n_train": cfg.n_train, "mix": cfg.mix, "fresh_scenes": cfg.fresh_scenes,
            "digit_shift": cfg.digit_shift, "numbers": cfg.numbers, "max_digits": cfg.max_digits,
            "group_images": cfg.group_images,
            "n_val": cfg.n_val, "lm_preset": cfg.lm_preset,
            "lora": asdict(cfg.lora) if cfg.lora else None, "model_config": vlm.config.to_dict(),
            "params": vlm.num_params(), "image_tokens": 2 * cfg.vision.tokens_per_view,
            "stages": {k: {"steps": r.step, "train_seconds": r.wall_time, "final_loss": r.final_train_loss,
                           "last_eval": r.last_eval} for k, r in results.items()},
            "wall_seconds": time.perf_counter() - t0}
    write_json(run_dir / "run.json", info)
    return info


def save_vlm(vlm: VLM, run_dir: Path) -> None:
    save_checkpoint(run_dir / "vlm.pt", {"model": {k: v.detach().cpu() for k, v in vlm.state_dict().items()
                                                   if not k.startswith("lm.rope_")},
                                         "model_config": vlm.config.to_dict()})


def load_vlm(run_dir: str | Path) -> tuple[VLM, Tokenizer, dict]:
    """(VLM in eval mode, tokenizer, run.json) of a trained run directory."""
    from lmstack.io.files import read_json

    run_dir = Path(run_dir)
    if not (run_dir / "vlm.pt").exists():
        raise LmstackError(f"{run_dir} is not a finished vision run (no vlm.pt): run lmstack vision train")
    state = load_checkpoint(run_dir / "vlm.pt")
    info = read_json(run_dir / "run.json", "run file") if (run_dir / "run.json").exists() else {}
    vlm = VLM(VLMConfig.from_dict(state["model_config"]))
    vlm.load_state_dict(state["model"], strict=False)
    tok = Tokenizer.load(run_dir / "tokenizer.json", chat_template=info.get("chat_template"))
    return vlm.eval(), tok, info


def run_data(info: dict, image_size: int) -> VisionData:
    """The images a run trained and was held out on, rebuilt from its run.json."""
    return build_data(image_size, info.get("seed", 0), info.get("n_train", 3000), info.get("n_val", 300),
                      mix=info.get("mix"), numbers=info.get("numbers", 0.5),
                      max_digits=info.get("max_digits", 2))


def is_vlm_run(path: str | Path) -> bool:
    return (Path(path) / "vlm.pt").exists()

