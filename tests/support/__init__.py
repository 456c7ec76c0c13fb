"""What the tests share: fixtures (loaded as pytest plugins by tests/conftest.py), tiny model
builders, and stand-ins for the servers AskAny talks to (a model hub, an OpenAI-compatible LLM,
AskAny's own HTTP server)."""
