"""claw: the operator console for a GPU box that serves LLMs."""

__version__ = "0.1.0"
