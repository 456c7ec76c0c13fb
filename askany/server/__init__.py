"""The OpenAI-compatible HTTP server, AskAny's third front door (embeddings, rerank, grounded chat)."""

from askany.server.app import create_app, serve

__all__ = ["create_app", "serve"]
