"""`lmstack serve --guard`: the guard classifier in front of the model.

User input that the guard flags (a user message of a chat, a completion prompt) is refused with a
400 in OpenAI's error body (code "content_filter"), before any token is generated. A tool result
that it flags, whether the client sent it as a `tool` message or one of the server's own tools
returned it, is withheld from the model: its content is replaced by a note saying so, and the model
answers from the rest. System messages are the operator's and are not screened; assistant turns are
the model's own.
"""

from __future__ import annotations

from lmstack.serve.protocol import ApiError

WITHHELD = ("[withheld: the guard flagged this tool result as a likely {label} (score {score:.2f}); its content "
            "is not shown. Tell the user the result could not be used.]")


def withheld_note(verdict) -> str:
    return WITHHELD.format(label=verdict.label, score=verdict.score)


def refuse(verdict, param: str) -> ApiError:
    return ApiError(400, f"the input was flagged by the guard as a likely {verdict.label} "
                         f"(score {verdict.score:.2f}) and was not processed", param, "content_filter")


def screen_messages(guard, messages: list[dict]) -> list[dict]:
    """The messages with flagged tool results withheld; a flagged user message is a 400."""
    users = [(i, m) for i, m in enumerate(messages) if m["role"] == "user"]
    tools = [(i, m) for i, m in enumerate(messages) if m["role"] == "tool"]
    verdicts = guard.check_many([m.get("content") or "" for _, m in users + tools])
    out = list(messages)
    for (i, m), v in zip(users + tools, verdicts, strict=True):
        if v.flagged and m["role"] == "user":
            raise refuse(v, f"messages.{i}.content")
        if v.flagged:
            out[i] = {**m, "content": withheld_note(v)}
    return out


def screen_prompts(guard, prompts: list[str]) -> None:
    for i, v in enumerate(guard.check_many(prompts)):
        if v.flagged:
            raise refuse(v, "prompt" if len(prompts) == 1 else f"prompt.{i}")


class GuardedTool:
    """One of the server's tools whose results pass the guard before the model sees them."""

    def __init__(self, tool, guard):
        self.tool, self.guard, self.name = tool, guard, tool.name

    def spec(self) -> dict:
        return self.tool.spec()

    def __call__(self, arguments: dict):
        result = self.tool(arguments)
        v = self.guard.check(result.content)
        if v.flagged:
            result.content, result.is_error = withheld_note(v), True
        return result


def guard_tools(tools: list, guard) -> list:
    return [GuardedTool(t, guard) for t in tools] if guard else list(tools)
