"""An OpenAI-compatible server (FastAPI + uvicorn) and a one-page web chat, over the engine."""

from lmstack.serve.app import ModelEntry, create_app

__all__ = ["ModelEntry", "create_app"]
