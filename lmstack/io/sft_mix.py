"""The curated conversations of `lmstack data sft-mix`: questions an assistant can learn offline.

Generated, not downloaded: every answer is read off the default corpus or computed, so the mix is
correct by construction and the same on every machine (seeded). Tasks: who speaks a line, which
play a passage is from, what line comes next, arithmetic, the assistant's identity, and multi-turn
follow-ups that need the earlier turns. Passages come only from the plays that pretraining trains
on (its held-out plays stay unseen), and held-out conversations never repeat a training prompt.
Each record's `meta` names its task and the short answer that `lmstack eval --chat` looks for.
The default mix joins these to the tool-use conversations (tools/sft_tools.py: default_sft_mix).
"""

from __future__ import annotations

import configparser
import functools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.conversations import Conversation
from lmstack.io.corpora import fetch_corpus, load_documents, split_documents

IDENTITY = ("I am lmstack's assistant, a small language model trained from scratch with lmstack. "
            "I answer questions about Shakespeare's plays and do simple arithmetic.")
SYSTEM_PROMPTS = ["You are a helpful assistant.", "Answer briefly.", "You are lmstack's assistant.",
                  "You are an expert on Shakespeare. Be concise."]
TASK_WEIGHTS = {"speaker": 24, "play": 20, "next_line": 14, "arithmetic": 20, "identity": 10, "follow_up": 12}
MIX_VERSION = 1


@dataclass
class MixConfig:
    n_train: int = 3000
    n_val: int = 200
    seed: int = 0
    val_fraction: float = 0.05  # the pretraining split whose held-out plays are left out
    split_seed: int = 0


@dataclass
class Speech:
    speaker: str
    lines: list[str]


@dataclass
class Play:
    title: str
    speeches: list[Speech]


_SPEAKER = re.compile(r"^([A-Z][A-Za-z'\- ]{1,30})\.$")


def play_titles(root: Path) -> dict[str, str]:
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(root / "shksprdata" / "texts" / "metadata.txt", encoding="utf-8")
    return {s.removesuffix("_gut"): meta[s].get("title", s) for s in meta.sections()}


_NUMBER = r"([IVX]+|\d+|FIRST|SECOND|THIRD|FOURTH|FIFTH)"
_ACT = re.compile(rf"^ACT\s+{_NUMBER}\b", re.IGNORECASE)
_SCENE = re.compile(rf"^SCENE\s+{_NUMBER}\b", re.IGNORECASE)
_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "FIRST": "I", "SECOND": "II", "THIRD": "III",
          "FOURTH": "IV", "FIFTH": "V"}


@dataclass
class Block:
    """A paragraph of a play's text and where it stands: act and scene so far (roman numerals, ""
    before the first), the speaker when the paragraph is a speech, and its lines."""

    act: str
    scene: str
    speaker: str | None
    lines: list[str]


def play_blocks(text: str) -> list[Block]:
    """Every non-blank paragraph of a play in order. A speech starts with a speaker label alone on a
    line ("HAMLET.", "First Citizen."); its lines leave out stage directions in brackets. Act and
    scene headings are spelled many ways in the corpus ("ACT I.", "Act 1.", "ACT FIRST", "Scene II.--")."""
    act = scene = ""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
        if not lines:
            continue
        for ln in lines if len(lines) <= 3 else lines[:1]:  # headings stand alone, a line or two
            if len(ln) <= 80 and (m := _ACT.match(ln)):
                act, scene = _ROMAN.get(m.group(1).upper(), m.group(1).upper()), ""
            elif len(ln) <= 80 and (m := _SCENE.match(ln)):
                scene = _ROMAN.get(m.group(1).upper(), m.group(1).upper())
        m = _SPEAKER.match(lines[0]) if len(lines) >= 2 else None
        verse = [ln for ln in lines[1:] if not ln.startswith("[")]
        if m and verse:
            out.append(Block(act, scene, m.group(1).strip(), verse))
        else:
            out.append(Block(act, scene, None, lines))
    return out


def speaker_name(label: str) -> str:
    """A speaker label as a name: "LADY MACBETH" -> "Lady Macbeth", "First Citizen" unchanged."""
    if label.isupper():
        return re.sub(r" (Of|The|And|De) ", lambda m: m.group(0).lower(), label.title())
    return label


def parse_play(title: str, text: str) -> Play:
    """Speeches of a play (see play_blocks). Abbreviated labels ("Hor.") are kept only when the name
    also occurs in the dialogue, so answers are real names, not abbreviations."""
    blocks = [(b.speaker, b.lines) for b in play_blocks(text) if b.speaker]
    # capitalised words of the dialogue itself: a real name is spoken somewhere, an abbreviation is not
    spoken = {w.lower() for _, verse in blocks for ln in verse for w in re.findall(r"[A-Z][a-z']+", ln)}
    speeches = []
    for name, verse in blocks:
        if not any(len(w) >= 4 and w in spoken for w in name.lower().split()):
            continue
        speeches.append(Speech(speaker_name(name), verse))
    return Play(title, speeches)


def load_plays(cfg: MixConfig) -> list[Play]:
    """The plays pretraining trains on (its held-out documents are left out), with their titles."""
    return list(_plays(cfg.val_fraction, cfg.split_seed))


@functools.lru_cache(maxsize=4)
def _plays(val_fraction: float, split_seed: int) -> tuple[Play, ...]:
    """Parsed once per process: the curated and the tool-use conversations both draw from them."""
    docs = load_documents("shakespeare")
    train_docs, _ = split_documents(docs, val_fraction, split_seed)
    titles = play_titles(fetch_corpus("shakespeare", quiet=True))
    plays = [parse_play(titles.get(d.name, d.name), d.text) for d in train_docs]
    plays = [p for p in plays if len(p.speeches) >= 100]  # poems and sonnets have no speakers
    if not plays:
        raise LmstackError("no plays with speaker labels found in the shakespeare corpus")
    return tuple(plays)


def _good_line(line: str) -> bool:
    return 4 <= len(line.split()) <= 14 and len(line) <= 90 and line[:1].isupper()


class Maker:
    """Draws one conversation of a task from a seeded random stream. `item` holds what the last
    question was drawn from (the line, the play, the speaker), for the tool-use versions of a task."""

    def __init__(self, plays: list[Play], rng: random.Random, held_out: bool = False):
        self.plays, self.rng, self.held_out = plays, rng, held_out
        self.item: dict = {}
        self.long = [(p, s) for p in plays for s in p.speeches if sum(_good_line(x) for x in s.lines) >= 2]

    def _speech(self):
        return self.rng.choice(self.long)

    def _line(self, s: Speech) -> int:
        return self.rng.choice([i for i, x in enumerate(s.lines) if _good_line(x)])

    def speaker(self):
        play, s = self._speech()
        line = s.lines[self._line(s)]
        q = self.rng.choice([f'Who says this line in {play.title}?\n"{line}"',
                             f'In {play.title}, who speaks the line "{line}"?',
                             f'Which character in {play.title} says: "{line}"'])
        self.item = {"query": line, "play": play.title}
        return [q], [f"{s.speaker} says it."], s.speaker

    def play(self):
        play, s = self._speech()
        i = self._line(s)
        passage = "\n".join(s.lines[i : i + self.rng.randint(2, 3)])
        q = self.rng.choice([f"Which play is this passage from?\n\n{passage}",
                             f"Name the play this comes from:\n{passage}",
                             f"From which of Shakespeare's plays is this?\n{passage}"])
        self.item = {"query": s.lines[i], "play": play.title}
        return [q], [f"It is from {play.title}."], play.title

    def next_line(self):
        play, s = self._speech()
        cands = [i for i in range(len(s.lines) - 1) if _good_line(s.lines[i]) and _good_line(s.lines[i + 1])]
        if not cands:
            return self.next_line()
        i = self.rng.choice(cands)
        q = self.rng.choice([f'In {play.title}, what line comes after "{s.lines[i]}"?',
                             f'Continue this line from {play.title}: "{s.lines[i]}"'])
        self.item = {"query": s.lines[i], "play": play.title}
        return [q], [s.lines[i + 1]], s.lines[i + 1]

    def _arith(self):
        op = self.rng.choice("+-*")
        a, b = (self.rng.randint(2, 12), self.rng.randint(2, 12)) if op == "*" else \
            (self.rng.randint(1, 99), self.rng.randint(1, 99))
        if op == "-" and b > a:
            a, b = b, a
        return a, op, b, {"+": a + b, "-": a - b, "*": a * b}[op]

    def arithmetic(self):
        a, op, b, r = self._arith()
        sym = {"+": "+", "-": "-", "*": "x"}[op]
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        q = self.rng.choice([f"What is {a} {sym} {b}?", f"Compute {a} {sym} {b}.", f"{a} {sym} {b} = ?",
                             f"What is {a} {word} {b}?"])
        self.item = {"expression": f"{a} {op} {b}", "sym": sym}
        return [q], [f"{a} {sym} {b} = {r}."], str(r)

    def identity(self):
        # held-out questions are phrased in ways training never shows
        questions = (["Tell me about yourself.", "What should I call you?", "Who built you?"] if self.held_out else
                     ["Who are you?", "What is your name?", "What are you?", "Introduce yourself.",
                      "Who made you?", "What can you do?", "Are you a person?"])
        q = self.rng.choice(["", "Hi! ", "Hello. ", "Hey, "]) + self.rng.choice(questions)
        return [q], [IDENTITY], "lmstack's assistant"

    def follow_up(self):
        kind = self.rng.randrange(3)
        if kind == 0:
            (q,), (a,), title = self.play()
            return [q, self.rng.choice(["Who wrote it?", "And who is its author?"])], \
                [a, f"{title} was written by William Shakespeare."], "William Shakespeare"
        if kind == 1:
            play, s = self._speech()
            line = s.lines[self._line(s)]
            return [f'Who says "{line}"?', "Which play is that from?"], \
                [f"{s.speaker} says it.", f"It is from {play.title}."], play.title
        a, op, b, r = self._arith()
        sym = {"+": "+", "-": "-", "*": "x"}[op]
        c = self.rng.randint(2, 9)
        return [f"What is {a} {sym} {b}?", f"And if you add {c} to that?"], \
            [f"{a} {sym} {b} = {r}.", f"{r} + {c} = {r + c}."], str(r + c)

    def make(self, task: str) -> Conversation:
        users, answers, short = getattr(self, task)()
        msgs = []
        if self.rng.random() < 0.25:
            msgs.append({"role": "system", "content": self.rng.choice(SYSTEM_PROMPTS)})
        for u, a in zip(users, answers, strict=True):
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        return Conversation(msgs, meta={"task": task, "answer": short})


def _prompt_key(c: Conversation) -> str:
    return json.dumps([m["content"] for m in c.messages if m["role"] != "assistant"])


def build_sft_mix(cfg: MixConfig | None = None) -> tuple[list[Conversation], list[Conversation]]:
    """(train, held-out) conversations; held-out prompts never occur in train."""
    cfg = cfg or MixConfig()
    plays = load_plays(cfg)
    tasks, weights = list(TASK_WEIGHTS), list(TASK_WEIGHTS.values())

    def draw(n: int, stream: int, avoid: set[str]) -> list[Conversation]:
        rng = random.Random(f"{cfg.seed}:{stream}")
        maker, out, seen = Maker(plays, rng, held_out=stream == 1), [], set(avoid)
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 50 * n:
                raise LmstackError("could not draw enough distinct conversations")
            c = maker.make(rng.choices(tasks, weights)[0])
            key = _prompt_key(c)
            if stream == 1 and key in seen:  # held-out: only prompts never seen in training
                continue
            seen.add(key)
            out.append(c)
        return out

    train = draw(cfg.n_train, 0, set())
    val = draw(cfg.n_val, 1, {_prompt_key(c) for c in train})
    return train, val
