"""Tool-use conversations for fine-tuning, and the default `sft-mix` that joins them to the curated set.

Generated, deterministic (seeded), and checked by construction: each conversation offers some of the
built-in tools (their real specs), the assistant calls the one the question needs, the result comes
back in the `tool` role exactly as the real tool gives it, and the assistant answers from it.
- calculator: arithmetic of any size (1 to 12 digits), the result from the real calculator;
- letters: counting a letter in a word with the python tool (the script's output, in the sandbox's
  own result format, is computed here: running a sandbox per record would take minutes);
- search_speaker / search_play / search_next_line: the curated Shakespeare questions answered from
  the real search tool over the real corpus (a training record is kept only when the top passage
  holds the answer, so the model never learns to answer what the result does not say);
- docs: facts that exist only in a generated folder of notes, found with search over that folder;
- no_tool: tools offered but not needed (who are you, who wrote a play): a direct answer, no call;
- function_call / no_fit (io/sft_functions.py): calls to generated functions, or none when none fits.
Held out by item (a hash of the numbers, the word, the line, the entity) and by template (phrasings
only the held-out side uses), so no held-out question is ever trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.conversations import Conversation, tool_exchange, write_conversations
from lmstack.io.files import write_json
from lmstack.io.packages import cache_dir
from lmstack.io.sft_functions import GREETINGS, function_call, no_fit
from lmstack.io.sft_mix import MIX_VERSION, TASK_WEIGHTS, Maker, MixConfig, build_sft_mix, load_plays
from lmstack.tools import Tool
from lmstack.tools.calculator import calculator_tool
from lmstack.tools.sandbox import SandboxLimits, SandboxResult, format_result, python_tool
from lmstack.tools.search import search_tool

TOOL_TASK_WEIGHTS = {"calculator": 16, "letters": 8, "search_speaker": 12, "search_play": 12,
                     "search_next_line": 10, "docs": 8, "no_tool": 8, "function_call": 16, "no_fit": 10}
TOOLS_VERSION = 3
# Training phrasings. The held-out ones (in the makers) are never among them nor start the same way; more
# ways of asking in training are what lets a model follow a phrasing it has never seen.
CALC_TRAIN_PHRASINGS = ["What is {a} {s} {b}?", "Compute {a} {s} {b}.", "{a} {s} {b} = ?", "What is {a} {w} {b}?",
                        "Work out {a} {s} {b}.", "What do you get for {a} {w} {b}?", "Please compute {a} {w} {b}.",
                        "Find {a} {s} {b} for me.", "What does {a} {w} {b} make?", "Evaluate {a} {s} {b}, please."]
LETTER_TRAIN_PHRASINGS = ["How many times does the letter '{l}' appear in '{w}'?",
                          "How many {l}'s are in the word {w}?",
                          "Count how many times '{l}' occurs in \"{w}\".", "How often is {l} found in {w}?",
                          "Tell me the number of {l}'s in {w}.", "What is the count of '{l}' in the word '{w}'?",
                          "Please count every {l} in {w}.", "Number of times {l} occurs in {w}?",
                          "For the word {w}, how many times does {l} appear?", "Take '{w}': how many {l}'s are in it?",
                          "The word is {w}. How many times does the letter {l} occur?",
                          "Find the number of {l}'s in {w}.", "Give me the count of the letter {l} in {w}.",
                          "Letter {l} in \"{w}\": how many?", "Check {w} for the letter {l}: how many are there?",
                          "{w} has how many {l}'s?"]
DOCS_NAME = "notes"  # the generated documents folder, as the search tool's description names it


@dataclass
class ToolMixConfig:
    n_train: int = 2400
    n_val: int = 240
    seed: int = 0
    weights: dict = field(default_factory=lambda: dict(TOOL_TASK_WEIGHTS))


def held_out(*key) -> bool:
    """One item in eight is held out, by a hash of what the question is about."""
    return hashlib.sha256(json.dumps(key).encode()).digest()[0] % 8 == 0


def tool_turns(user: str, tool: Tool, args: dict, result: str, answer: str) -> list[dict]:
    """user -> assistant call -> the tool's result (role tool) -> assistant answer."""
    return tool_exchange(user, tool.name, args, result) + [{"role": "assistant", "content": answer}]


# ---- the generated documents folder --------------------------------------------------------------
_SYLLABLES = ["mar", "vel", "dor", "kin", "ash", "tor", "lin", "bre", "cas", "wen", "ola", "rud", "fen", "gal"]
KINDS = ["lighthouse", "bridge", "observatory", "library", "museum", "harbour", "mill", "theatre"]
FACTS = [("built", "When was the {e} built?", "The {e} was built in {v}.", lambda r: str(r.randint(1700, 1990))),
         ("designer", "Who designed the {e}?", "The {e} was designed by {v}.",
          lambda r: f"{r.choice(['Ada', 'Bo', 'Cy', 'Di', 'Ed', 'Flo'])} {_word(r, 2).capitalize()}"),
         ("height", "How tall is the {e}?", "The {e} is {v} metres tall.", lambda r: str(r.randint(8, 140))),
         ("town", "In which town is the {e}?", "The {e} is in {v}.", lambda r: _word(r, 3).capitalize())]


def _word(r: random.Random, n: int) -> str:
    return "".join(r.choice(_SYLLABLES) for _ in range(n))


def doc_entities(n: int = 120) -> list[dict]:
    """Fictional places and their facts (seeded): nothing a model could know without the documents."""
    r, out, seen = random.Random("docs"), [], set()
    while len(out) < n:
        e = f"{_word(r, 2).capitalize()} {r.choice(KINDS)}"
        if e not in seen:
            seen.add(e)
            out.append({"entity": e, **{k: draw(r) for k, _, _, draw in FACTS}})
    return out


def docs_folder() -> Path:
    """The notes folder in the cache: one markdown file per entity, written once."""
    ents = doc_entities()
    key = hashlib.sha256(json.dumps(ents).encode()).hexdigest()[:12]
    root = cache_dir() / "sft-docs" / key / DOCS_NAME
    if not (root / "index.md").exists():
        root.mkdir(parents=True, exist_ok=True)
        for e in ents:
            text = (f"# The {e['entity']}\n\nThe {e['entity']} stands in the town of {e['town']}. It was "
                    f"built in {e['built']} to a design by {e['designer']}, and it is {e['height']} metres tall.\n")
            (root / (e["entity"].lower().replace(" ", "-") + ".md")).write_text(text, encoding="utf-8")
        (root / "index.md").write_text("# Notes\n\nOne note per place.\n", encoding="utf-8")
    return root


# ---- the tool-use tasks ---------------------------------------------------------------------------
class ToolMaker:
    """Draws tool-use conversations: `make(task, held_out)` or None when the draw cannot be used."""

    def __init__(self, cfg: ToolMixConfig, plays, rng: random.Random):
        self.rng = rng
        self.questions = Maker(plays, rng)
        self.calc, self.python = calculator_tool(), python_tool(SandboxLimits())
        self.search, self.notes = search_tool("shakespeare"), search_tool(docs_folder())
        self.entities = doc_entities()
        self.words = sorted({w.lower() for p in plays[:8] for s in p.speeches[:300] for ln in s.lines
                             for w in ln.split() if w.isalpha() and len(w) >= 5})

    def offer(self, needed: Tool, others: list[Tool]) -> list[dict]:
        """The needed tool with 0-2 of the others, in a random order."""
        tools = [needed, *self.rng.sample(others, self.rng.randint(0, min(2, len(others))))]
        self.rng.shuffle(tools)
        return [t.spec() for t in tools]

    def calculator(self, val: bool, size: str = "any") -> Conversation | None:
        r = self.rng
        op = r.choice("+-*") if size == "any" else {"mul_4x4": "*", "add_12": "+"}[size]
        da, db = (4, 4) if size == "mul_4x4" else (12, 12) if size == "add_12" else (r.randint(1, 12), r.randint(1, 12))
        a, b = r.randint(10 ** (da - 1), 10**da - 1), r.randint(10 ** (db - 1), 10**db - 1)
        if held_out(a, op, b) != val:
            return None
        sym, word = {"+": ("+", "plus"), "-": ("-", "minus"), "*": ("x", "times")}[op]
        phrasings = (["Calculate {a} {s} {b}.", "How much is {a} {w} {b}?"] if val else CALC_TRAIN_PHRASINGS)
        user = r.choice(phrasings).format(a=a, s=sym, w=word, b=b)
        expr = f"{a} {op} {b}"
        result = self.calc({"expression": expr}).content
        task = "calculator" if size == "any" else f"calc_{size}"
        turns = tool_turns(user, self.calc, {"expression": expr}, result, f"{a} {sym} {b} = {result}.")
        return Conversation(turns, tools=self.offer(self.calc, [self.python, self.search]),
                            meta={"task": task, "answer": result})

    def letters(self, val: bool) -> Conversation | None:
        r = self.rng
        word = r.choice(self.words)
        letter = r.choice(word) if r.random() < 0.8 else r.choice("aeioustrn")
        if held_out(word, letter) != val:
            return None
        phrasings = (["Count the letter {l} in {w}.", "In '{w}', how often does '{l}' occur?"] if val else
                     LETTER_TRAIN_PHRASINGS)
        code = f"print({word!r}.count({letter!r}))"
        n = word.count(letter)
        ran = SandboxResult(stdout=f"{n}\n", stderr="", exit_status=0, timed_out=False, isolation=[])
        result = format_result(ran, SandboxLimits())
        answer = f"The letter '{letter}' appears {n} {'time' if n == 1 else 'times'} in '{word}'."
        user = r.choice(phrasings).format(l=letter, w=word)
        return Conversation(tool_turns(user, self.python, {"code": code}, result, answer),
                            tools=self.offer(self.python, [self.calc]), meta={"task": "letters", "answer": str(n)})

    def shakespeare(self, val: bool, kind: str) -> Conversation | None:
        (user,), (answer,), short = getattr(self.questions, kind)()
        query = self.questions.item["query"]
        if held_out(query) != val:
            return None
        args = {"query": query, "k": 1}
        result = self.search(args).content
        if not val and short.lower() not in result.lower():  # train only on results that hold the answer
            return None
        turns = tool_turns(user, self.search, args, result, answer)
        return Conversation(turns, tools=self.offer(self.search, [self.calc]),
                            meta={"task": f"search_{kind}", "answer": short})

    def docs(self, val: bool) -> Conversation | None:
        e = self.rng.choice(self.entities)
        fact, question, answer, _ = self.rng.choice(FACTS)
        if held_out(e["entity"]) != val:  # a held-out place is never asked about in training
            return None
        args = {"query": e["entity"], "k": 1}
        result = self.notes(args).content
        say = lambda t: t.format(e=e["entity"], v=e[fact])
        return Conversation(tool_turns(say(question), self.notes, args, result, say(answer)),
                            tools=self.offer(self.notes, [self.calc, self.python]),
                            meta={"task": "docs", "answer": e[fact], "docs": DOCS_NAME})

    def no_tool(self, val: bool) -> Conversation | None:
        r, kind = self.rng, self.rng.randrange(4)
        if kind == 0:
            (user,), (answer,), short = self.questions.identity()
        elif kind == 1:
            title = r.choice(self.questions.plays).title
            user, short = f"Who wrote {title}?", "William Shakespeare"
            answer = f"{title} was written by William Shakespeare."
        elif kind == 2:
            user, answer = r.choice(GREETINGS)
            short = answer.split()[0].strip("!.,")
        else:
            (_,), (_,), _ = self.questions.speaker()
            line = self.questions.item["query"]
            user, answer, short = f"Repeat this line back to me: {line}", line, line
        if held_out(user) != val:
            return None
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        offered = self.offer(r.choice([self.calc, self.search]), [self.calc, self.search, self.python])
        return Conversation(msgs, tools=offered, meta={"task": "no_tool", "answer": short})

    def make(self, task: str, val: bool) -> Conversation | None:
        makers: dict[str, Callable[[], Conversation | None]] = {
            "calculator": lambda: self.calculator(val, self.rng.choice(["any", "any", "mul_4x4", "add_12"])),
            "letters": lambda: self.letters(val),
            "search_speaker": lambda: self.shakespeare(val, "speaker"),
            "search_play": lambda: self.shakespeare(val, "play"),
            "search_next_line": lambda: self.shakespeare(val, "next_line"),
            "docs": lambda: self.docs(val), "no_tool": lambda: self.no_tool(val),
            "function_call": lambda: function_call(self.rng, val), "no_fit": lambda: no_fit(self.rng, val)}
        if task not in makers:
            raise LmstackError(f"unknown tool-use task {task!r}; the tasks are {', '.join(makers)}")
        return makers[task]()


def build_tool_mix(cfg: ToolMixConfig | None = None, mix: MixConfig | None = None
                   ) -> tuple[list[Conversation], list[Conversation]]:
    """(train, held-out) tool-use conversations; no held-out prompt occurs in train."""
    cfg, mix = cfg or ToolMixConfig(), mix or MixConfig()
    plays = load_plays(mix)
    tasks, weights = list(cfg.weights), list(cfg.weights.values())

    def draw(n: int, val: bool, avoid: set[str]) -> list[Conversation]:
        rng = random.Random(f"tools:{cfg.seed}:{int(val)}")
        maker, out, seen = ToolMaker(cfg, plays, rng), [], set(avoid)
        while len(out) < n:
            task = rng.choices(tasks, weights)[0]
            for _ in range(500):  # most draws of an item land on the other side of the split: draw again
                c = maker.make(task, val)
                if c is not None and (key := _user_key(c)) not in seen:
                    seen.add(key)
                    out.append(c)
                    break
            else:
                raise LmstackError(f"could not draw {n} distinct tool-use conversations ({task})")
        return out

    train = draw(cfg.n_train, False, set())
    val = draw(cfg.n_val, True, {_user_key(c) for c in train})
    return train, val


def _user_key(c: Conversation) -> str:
    return json.dumps([m["content"] for m in c.messages if m["role"] == "user"])


def tools_for(conv: Conversation) -> list[Tool]:
    """The real tools behind a record's built-in tool specs (search over the corpus or the notes);
    functions that are not built in are left out: the client would run those."""
    by_name = {"calculator": calculator_tool, "python": python_tool}
    out = []
    for spec in conv.tools or []:
        name = spec["function"]["name"]
        if name == "search":
            out.append(search_tool(docs_folder() if conv.meta.get("docs") == DOCS_NAME else "shakespeare"))
        elif name in by_name:
            out.append(by_name[name]())
    return out


# ---- the default mix: curated conversations and tool use together ---------------------------------
def write_sft_mix(out_dir: str | Path, mix: MixConfig | None = None, tools: ToolMixConfig | None = None
                  ) -> tuple[Path, Path]:
    """train.jsonl and val.jsonl: the curated conversations and the tool-use ones, shuffled together."""
    mix, tools = mix or MixConfig(), tools or ToolMixConfig()
    train, val = build_sft_mix(mix)
    tool_train, tool_val = build_tool_mix(tools, mix)
    train = train + tool_train
    random.Random(mix.seed).shuffle(train)
    out_dir = Path(out_dir)
    paths = (write_conversations(out_dir / "train.jsonl", train),
             write_conversations(out_dir / "val.jsonl", val + tool_val))
    write_json(out_dir / "mix.json", {"version": MIX_VERSION, "tools_version": TOOLS_VERSION, **asdict(mix),
                                      "tasks": TASK_WEIGHTS, "tools": asdict(tools)})
    return paths


def default_sft_mix(mix: MixConfig | None = None, tools: ToolMixConfig | None = None) -> tuple[Path, Path]:
    """The mix in the cache (built once per settings): what `--data sft-mix` means."""
    mix, tools = mix or MixConfig(), tools or ToolMixConfig()
    key = hashlib.sha256(json.dumps([MIX_VERSION, TOOLS_VERSION, asdict(mix), TASK_WEIGHTS,
                                     asdict(tools)]).encode()).hexdigest()[:12]
    out = cache_dir() / "sft-mix" / key
    if not (out / "mix.json").exists():
        write_sft_mix(out, mix, tools)
    return out / "train.jsonl", out / "val.jsonl"
