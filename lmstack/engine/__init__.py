"""Fast inference: a static KV cache, batched decoding with a continuous-batching scheduler,
sampling, streaming text, and int8/int4 weight-only quantisation. See engine.py."""

from lmstack.engine.engine import Completion, Engine, Request, TokenEvent
from lmstack.engine.sampling import SamplingParams

__all__ = ["Completion", "Engine", "Request", "SamplingParams", "TokenEvent"]
