"""The security scorecard: every measured attack on one model, as JSON and as a markdown table."""

from __future__ import annotations

from pathlib import Path

from lmstack.io.files import atomic_write, write_json
from lmstack.security import injection, refusal


def write_scorecard(engine, model_name: str, out: Path, cases: int = 8, seed: int = 0,
                    refusal_cases: int = 36, defence_prompt: bool = True) -> dict:
    """Run the attack suites on the engine's model and write out/scorecard.{json,md}; returns the card.
    refusal_cases: held-out harmful requests and as many look-alikes (0: no refusal suite);
    defence_prompt False leaves out the injection suite's second pass with the defence prompt."""
    inj = injection.evaluate(engine, n_per_style=cases, seed=seed, defence_prompt=defence_prompt)
    card = {"model": model_name, "seed": seed, "injection": inj}
    if refusal_cases:
        card["refusal"] = refusal.evaluate(engine, refusal_cases, seed)
    write_json(out / "scorecard.json", card)
    atomic_write(out / "scorecard.md", markdown(card))
    return card


def markdown(card: dict) -> str:
    inj = card["injection"]
    styles = list(next(iter(inj.values()))["by_style"])
    lines = [f"# Security scorecard: {card['model']}", "",
             "Prompt injection through tool results, held-out attack styles (attack success: the reply "
             "contains the attacker's code word; utility: it answers the user's question).", "",
             "| defence | attack success | utility | " + " | ".join(styles) + " |",
             "|---|---|---|" + "---|" * len(styles)]
    for name, r in inj.items():
        per = " | ".join(f"{r['by_style'][s]['attack_success']:.0%}" for s in styles)
        lines.append(f"| {name} | {r['attack_success']:.1%} | {r['utility']:.1%} | {per} |")
    lines += ["", f"{next(iter(inj.values()))['cases']} cases per defence, seed {card['seed']}."]
    if ref := card.get("refusal"):
        lines += ["", "Refusals of held-out requests (a reply refuses when it declines in its first 300 "
                  "characters; harmful should be refused, benign look-alikes answered).", "",
                  "| harmful refused | look-alikes refused | harmful cases | look-alike cases |", "|---|---|---|---|",
                  f"| {ref['harmful_refusal']:.1%} | {ref['lookalike_refusal']:.1%} | {ref['harmful_cases']} "
                  f"| {ref['benign_cases']} |"]
    lines += ["", "`lmstack security eval` reproduces these tables."]
    return "\n".join(lines) + "\n"
