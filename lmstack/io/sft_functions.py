"""Function-calling conversations over generated function signatures, so tool use is a skill, not a
memory of lmstack's own three tools.

Each conversation offers a few functions (OpenAI `tools` format) with varied names (snake_case and
camelCase), argument types (strings, integers, numbers, booleans, enums, arrays, nested objects),
required and optional arguments, and asks for one action, or two at once (parallel calls). The user's
words hold every argument value verbatim, so the right call is exact: the assistant turn calls the
function(s), the client's results come back in the `tool` role, and the assistant reports them.
`no_fit` conversations offer functions that do not fit the request: the answer is words, no call.

Held out by signature: the nouns of held-out functions never name a training function, so the
held-out tasks are calls to functions the model has never seen. Each record's `meta.calls` is the
expected first reply's calls ([] for no call), which `lmstack eval --chat` scores exactly.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from lmstack.io.conversations import Conversation, tool_call

VERBS = ["get", "create", "update", "delete", "search", "list", "book", "send", "schedule", "cancel", "find",
         "add", "check", "convert", "reserve", "archive", "export", "track"]
NOUNS = ["weather_forecast", "invoice", "flight", "hotel_room", "user_account", "order", "playlist", "reminder",
         "support_ticket", "recipe", "stock_quote", "meeting", "calendar_event", "shipment", "library_book",
         "parking_spot", "restaurant_table", "train_ticket", "expense_report", "blog_post", "photo_album",
         "contact", "task", "note", "subscription", "payment", "package", "exchange_rate", "movie_showtime",
         "gym_class", "doctor_appointment", "car_rental", "podcast_episode", "news_article", "workout",
         "grocery_list", "bank_transfer", "job_posting", "concert_ticket", "translation"]
CITIES = ["Paris", "Lagos", "Osaka", "Lima", "Oslo", "Denver", "Porto", "Hanoi", "Cairo", "Quito", "Perth",
          "Dublin", "Austin", "Leeds", "Kyoto", "Nairobi"]
PEOPLE = ["Ana Ruiz", "Tom Berg", "Mei Chen", "Sam Okafor", "Lena Vogel", "Raj Patel", "Ida Holm", "Omar Haddad",
          "Kate Lowe", "Yuki Sato"]
WORDS = ["budget", "travel", "urgent", "family", "review", "summer", "draft", "music", "health", "garden"]
TITLES = ["Quarterly Plan", "Moving Day", "Spring Menu", "Team Offsite", "Bike Repair", "Launch Notes",
          "Book Club", "Tax Papers", "Night Shift", "Road Trip"]


@dataclass(frozen=True)
class Param:
    """An argument kind: its JSON schema, a value drawn at random, and the words that say the value."""

    name: str
    schema: dict
    draw: Callable[[random.Random], object]
    say: Callable[[object], str]
    more: tuple[Callable[[object], str], ...] = ()  # training-only ways to say a value (held out: `say`)


def _date(r: random.Random) -> str:
    return f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"


def _s(desc: str, **kw) -> dict:
    return {"description": desc, **kw}


PARAMS = [
    Param("city", _s("city name", type="string"), lambda r: r.choice(CITIES), lambda v: f"in {v}"),
    Param("name", _s("a person's full name", type="string"), lambda r: r.choice(PEOPLE), lambda v: f"for {v}"),
    Param("title", _s("title", type="string"), lambda r: r.choice(TITLES), lambda v: f'titled "{v}"'),
    Param("query", _s("words to look for", type="string"), lambda r: r.choice(WORDS), lambda v: f'about "{v}"'),
    Param("email", _s("email address", type="string"),
          lambda r: f"{r.choice(PEOPLE).split()[0].lower()}@{r.choice(['mail.com', 'work.org', 'inbox.net'])}",
          lambda v: f"with the email {v}"),
    Param("date", _s("date, YYYY-MM-DD", type="string"), _date, lambda v: f"on {v}"),
    Param("limit", _s("how many results", type="integer", minimum=1, maximum=50), lambda r: r.randint(1, 50),
          lambda v: f"with a limit of {v}"),
    Param("year", _s("year", type="integer"), lambda r: r.randint(1950, 2030), lambda v: f"for the year {v}"),
    Param("quantity", _s("how many", type="integer", minimum=1), lambda r: r.randint(1, 12),
          lambda v: f"with quantity {v}"),
    Param("amount", _s("amount of money", type="number"), lambda r: round(r.uniform(1, 999), 2),
          lambda v: f"for an amount of {v}"),
    Param("max_price", _s("highest price", type="number"), lambda r: r.choice([20, 49.5, 75, 120.25, 300]),
          lambda v: f"with a maximum price of {v}"),
    Param("urgent", _s("whether it is urgent", type="boolean"), lambda r: r.random() < 0.5,
          lambda v: "marked urgent" if v else "marked not urgent",
          (lambda v: "as urgent" if v else "as not urgent", lambda v: "flagged urgent" if v else "that is not urgent",
           lambda v: "with urgent set" if v else "without marking it urgent")),
    Param("include_archived", _s("include archived items", type="boolean"), lambda r: r.random() < 0.5,
          lambda v: "including archived ones" if v else "excluding archived ones",
          (lambda v: "with archived ones too" if v else "without archived ones",
           lambda v: "archived ones included" if v else "leaving out archived ones",
           lambda v: "counting archived ones" if v else "skipping archived ones")),
    Param("unit", _s("temperature unit", type="string", enum=["celsius", "fahrenheit", "kelvin"]),
          lambda r: r.choice(["celsius", "fahrenheit", "kelvin"]), lambda v: f"in {v}"),
    Param("priority", _s("priority", type="string", enum=["low", "medium", "high"]),
          lambda r: r.choice(["low", "medium", "high"]), lambda v: f"with {v} priority"),
    Param("currency", _s("currency code", type="string", enum=["USD", "EUR", "GBP", "JPY"]),
          lambda r: r.choice(["USD", "EUR", "GBP", "JPY"]), lambda v: f"in {v}"),
    Param("tags", _s("labels", type="array", items={"type": "string"}), lambda r: r.sample(WORDS, 2),
          lambda v: "tagged " + " and ".join(f'"{t}"' for t in v)),
    Param("attendees", _s("people invited", type="array", items={"type": "string"}), lambda r: r.sample(PEOPLE, 2),
          lambda v: "with " + " and ".join(v)),
    Param("address", _s("postal address", type="object", properties={
              "street": {"type": "string"}, "city": {"type": "string"}, "zip": {"type": "string"}},
                        required=["street", "city", "zip"]),
          lambda r: {"street": f"{r.randint(1, 99)} {r.choice(['Elm', 'Mill', 'Park', 'Lake'])} Street",
                     "city": r.choice(CITIES), "zip": str(r.randint(10000, 99999))},
          lambda v: f"at {v['street']}, {v['city']}, zip {v['zip']}"),
    Param("date_range", _s("first and last day", type="object", properties={
              "start": {"type": "string"}, "end": {"type": "string"}}, required=["start", "end"]),
          lambda r: dict(zip(("start", "end"), sorted([_date(r), _date(r)]), strict=True)),
          lambda v: f"from {v['start']} to {v['end']}"),
]
_BY_NAME = {p.name: p for p in PARAMS}
GREETINGS = [("Hello!", "Hello! How can I help you today?"), ("Good morning.", "Good morning! What can I do for you?"),
             ("Thanks, that is all.", "You are welcome."), ("Thank you!", "You are welcome.")]
REQUESTS = ["Please {action} {args}.", "Can you {action} {args}?", "I need to {action} {args}.",
            "{Action} {args}, please.", "Could you {action} {args} for me?"]
HELD_OUT_REQUESTS = ["Go ahead and {action} {args}.", "Would you {action} {args}?"]
# training-only ways of asking (added to the shared ones on the training side only, so the held-out
# draws, which use their own generator, stay exactly what they were)
MORE_REQUESTS = ["I'd like you to {action} {args}.", "Help me {action} {args}.", "{Action} {args}.",
                 "Kindly {action} {args}.", "Is it possible to {action} {args}?", "Let's {action} {args}.",
                 "Time to {action} {args}.", "Could we {action} {args}?", "My request: {action} {args}.",
                 "You can {action} {args} now."]
# how a second request joins the first (held out: always "Also:")
MORE_JOINS = ["Also:", "And also:", "Then:", "After that:", "Next:", "Plus:", "Second:"]
NO_FIT_REQUESTS = ["Please {w}.", "Can you {w} for me?", "I want to {w}."]
MORE_NO_FIT_REQUESTS = ["I need to {w}.", "Could you {w}?", "{W}, please.", "Help me {w}.", "I'd like to {w}."]


def held_out_noun(noun: str) -> bool:
    """A quarter of the nouns name only held-out functions (a fixed hash, the same everywhere)."""
    return hashlib.sha256(noun.encode()).digest()[0] % 4 == 0


@dataclass
class Signature:
    verb: str
    noun: str
    name: str
    params: list[Param]
    required: list[str]

    def spec(self) -> dict:
        props = {p.name: p.schema for p in self.params}
        return {"type": "function", "function": {
            "name": self.name, "description": f"{self.verb.capitalize()} {_a(self.noun)}.",
            "parameters": {"type": "object", "properties": props, "required": self.required}}}


def make_signature(rng: random.Random, held_out: bool) -> Signature:
    noun = rng.choice([n for n in NOUNS if held_out_noun(n) == held_out])
    verb = rng.choice(VERBS)
    words = [verb, *noun.split("_")]
    name = "_".join(words) if rng.random() < 0.6 else words[0] + "".join(w.capitalize() for w in words[1:])
    params = rng.sample(PARAMS, rng.randint(1, 4))
    required = [p.name for p in params[: rng.randint(1, len(params))]]
    return Signature(verb, noun, name, params, required)


def _signatures(rng: random.Random, n: int, held_out: bool) -> list[Signature]:
    """n signatures with different nouns, so a request names exactly one of them."""
    sigs: list[Signature] = []
    while len(sigs) < n:
        s = make_signature(rng, held_out)
        if all(s.noun != t.noun for t in sigs):
            sigs.append(s)
    return sigs


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun.replace("_", " ")


def _say(rng: random.Random, p: Param, value: object, held_out: bool) -> str:
    if held_out or not p.more or rng.random() < 0.5:  # no draw on the held-out side: its records stay as they were
        return p.say(value)
    return rng.choice(p.more)(value)


def _request(rng: random.Random, sig: Signature, held_out: bool) -> tuple[str, dict]:
    """The words asking for one call, and that call's exact arguments (optional ones only when said)."""
    args = {}
    for p in sig.params:
        if p.name in sig.required or rng.random() < 0.5:
            args[p.name] = p.draw(rng)
    said = " ".join(_say(rng, _BY_NAME[k], v, held_out) for k, v in args.items())
    action = f"{sig.verb} {_a(sig.noun)}"
    text = rng.choice(HELD_OUT_REQUESTS if held_out else REQUESTS + MORE_REQUESTS)
    return text.format(action=action, Action=action.capitalize(), args=said), args


def function_call(rng: random.Random, held_out: bool) -> Conversation:
    """One or two requests (parallel calls) among 2-4 offered functions; results; a short report."""
    sigs = _signatures(rng, rng.randint(2, 4), held_out)
    # training asks for two calls more often (half the time): a second request is the easy one to drop
    wanted = [sigs[0]] if rng.random() < (0.7 if held_out else 0.5) else [sigs[0], rng.choice(sigs)]
    asks, calls = [], []
    for s in wanted:
        words, args = _request(rng, s, held_out)
        asks.append(words)
        calls.append({"name": s.name, "arguments": args})
    user = asks[0]
    if len(asks) == 2:
        user += " " + ("Also:" if held_out else rng.choice(MORE_JOINS)) + " " + asks[1]
    rng.shuffle(sigs)
    refs = [f"{c['name'][:2].upper()}-{rng.randint(1000, 9999)}" for c in calls]
    msgs = [{"role": "user", "content": user},
            {"role": "assistant", "content": "", "tool_calls": [tool_call(c["name"], c["arguments"], i)
                                                               for i, c in enumerate(calls)]}]
    msgs += [{"role": "tool", "tool_call_id": f"call_{i}", "name": c["name"],
              "content": json.dumps({"status": "ok", "reference": ref})}
             for i, (c, ref) in enumerate(zip(calls, refs, strict=True))]
    msgs.append({"role": "assistant", "content": "Done: " + "; ".join(
        f"{c['name']} succeeded (reference {ref})" for c, ref in zip(calls, refs, strict=True)) + "."})
    return Conversation(msgs, tools=[s.spec() for s in sigs],
                        meta={"task": "function_call", "calls": calls, "answer": refs[-1]})


def no_fit(rng: random.Random, held_out: bool) -> Conversation:
    """A request that none of the offered functions can do: answered in words, with no call."""
    sigs = _signatures(rng, rng.randint(1, 3), held_out)
    taken = {s.noun for s in sigs}
    noun = rng.choice([n for n in NOUNS if n not in taken and held_out_noun(n) == held_out])
    # in training, half the requests share an offered function's verb: only the noun says it does not fit
    verb = sigs[0].verb if not held_out and rng.random() < 0.5 else rng.choice(VERBS)
    what = f"{verb} {_a(noun)}"
    kind = rng.randrange(3)
    if kind == 0:
        asks = NO_FIT_REQUESTS if held_out else NO_FIT_REQUESTS + MORE_NO_FIT_REQUESTS
        user = rng.choice(asks).format(w=what, W=what.capitalize())
        answer = f"None of the tools I have can {what}, so I cannot do that here."
        short = "cannot"
    elif kind == 1:
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        user, answer, short = f"What is {a} + {b}?", f"{a} + {b} = {a + b}.", str(a + b)
    else:
        user, answer = rng.choice(GREETINGS)
        short = answer.split()[0].strip("!.,")
    return Conversation([{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                        tools=[s.spec() for s in sigs], meta={"task": "no_fit", "calls": [], "answer": short})
