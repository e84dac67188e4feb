"""Tools a model can call: each is a name, a description and a JSON schema of its arguments (what
the model is shown, in OpenAI's `tools` format), and a function that runs a call.

A tool never raises at its caller for anything a call can get wrong: bad arguments, a refused
expression, a missing document folder all come back as a `ToolResult` with `is_error` set and one
line saying why, which the model reads as the tool's answer. Results are data: whoever runs the
loop puts them in the conversation in the `tool` role only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lmstack.errors import LmstackError

MAX_RESULT_CHARS = 4_000  # a result longer than this is cut, and says so


@dataclass
class ToolResult:
    content: str
    is_error: bool = False
    images: list[bytes] = field(default_factory=list)  # PNG files the tool produced


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments object
    fn: Callable[..., str | ToolResult]  # called with the arguments as keywords; raises LmstackError for a bad call

    def spec(self) -> dict:
        """The tool as the OpenAI API and chat templates describe it."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def __call__(self, arguments: dict) -> ToolResult:
        if not isinstance(arguments, dict):
            return ToolResult(f"error: {self.name} takes a JSON object of arguments", is_error=True)
        allowed = set(self.parameters.get("properties", {}))
        unknown = sorted(set(arguments) - allowed)
        missing = [k for k in self.parameters.get("required", []) if k not in arguments]
        if unknown or missing:
            why = "; ".join(filter(None, [unknown and f"unknown argument(s) {', '.join(unknown)}",
                                          missing and f"missing argument(s) {', '.join(missing)}"]))
            return ToolResult(f"error: {self.name}: {why}", is_error=True)
        try:
            out = self.fn(**arguments)
        except LmstackError as e:
            return ToolResult(f"error: {e}", is_error=True)
        if isinstance(out, ToolResult):
            out.content = truncate(out.content)
            return out
        return ToolResult(truncate(out))


def truncate(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit:,} more characters cut]"
