"""AskAny: offline question answering over Chinese documents."""

__version__ = "0.1.0"
