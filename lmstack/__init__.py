"""lmstack: a complete, readable large-language-model stack."""

__version__ = "0.1.0"
