"""The security scorecard: every measured attack on one model, as JSON and as a markdown table."""

from __future__ import annotations

from pathlib import Path

from lmstack.io.files import atomic_write, write_json
from lmstack.security import injection


def write_scorecard(engine, model_name: str, out: Path, cases: int = 8, seed: int = 0) -> dict:
    """Run the attack suites on the engine's model and write out/scorecard.{json,md}; returns the card."""
    inj = injection.evaluate(engine, n_per_style=cases, seed=seed)
    card = {"model": model_name, "seed": seed, "injection": inj}
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
    lines += ["", f"{next(iter(inj.values()))['cases']} cases per defence, seed {card['seed']}; "
              "`lmstack security eval` reproduces this table."]
    return "\n".join(lines) + "\n"
