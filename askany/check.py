"""What `--check` (and the web page's status tab) reports: settings, database, model roles, tokenizer, device."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from askany.config import Settings, env_file_path, setting_sources
from askany.errors import AskAnyError
from askany.models import ROLES, choose_device, role_status


def required_roles(settings: Settings) -> list[str]:
    """The model roles the settings ask for: missing one makes `--check` fail (the rest degrade quietly)."""
    wanted = {"embedding": settings.embedding_enabled, "reranker": settings.reranker_enabled,
              "llm": settings.llm_backend == "transformers", "hanlp": bool(settings.hanlp_tok_model)}
    return [role for role, needed in wanted.items() if needed]


def collect_status(settings: Settings, db_probe: bool = True) -> dict[str, Any]:
    """A JSON-ready description of every component, without loading model weights."""
    sources = setting_sources(settings)
    status: dict[str, Any] = {
        "settings": {
            "env_file": str(env_file_path()) if env_file_path().is_file() else None,
            "from_environment": sorted(k.upper() for k, v in sources.items() if v == "environment"),
            "from_env_file": sorted(k.upper() for k, v in sources.items() if v not in ("environment", "default")),
        },
        "database": _database_status(settings) if db_probe else {"ok": None},
        "models": {role: {**asdict(state), "ok": state.ok}
                   for role in ROLES for state in [role_status(settings, role)]},
    }
    hanlp = status["models"]["hanlp"]
    status["tokenizer"] = "hanlp" if hanlp["ok"] else "jieba"
    try:
        status["device"] = choose_device(settings)
    except AskAnyError as error:
        status["device"] = f"error: {error}"
    status["missing_required"] = [role for role in required_roles(settings) if not status["models"][role]["ok"]]
    status["ok"] = (bool(status["database"].get("ok", True)) and "error" not in str(status["device"])
                    and not status["missing_required"])
    return status


def _database_status(settings: Settings) -> dict[str, Any]:
    from askany.database import open_database
    from askany.store import ChunkStore

    try:
        db = open_database(settings)
        store = ChunkStore(db)
        return {"ok": True, "embedded": db.embedded,
                "where": str(settings.data_dir / "pgdata") if db.embedded else _redacted(db.url),
                "server_version": db.server_version(), "pgvector": db.pgvector_version(),
                "vectors_made_by": store.vector_model(), "chunks": store.count_chunks()}
    except AskAnyError as error:
        return {"ok": False, "error": str(error)}


def _redacted(url: str) -> str:
    """A connection URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
