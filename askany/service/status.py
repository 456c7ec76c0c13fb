"""What `--check` (and the web page's status tab) reports: settings, database, model roles, tokenizer, device."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from askany.core.config import Settings, env_file_path, setting_sources
from askany.core.errors import AskAnyError
from askany.models.registry import ROLES, choose_device, role_status
from askany.models.roles import HANLP, required_roles  # noqa: F401 - required_roles: the rule lives in the table


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
    status["tokenizer"] = "hanlp" if status["models"][HANLP.name]["ok"] else "jieba"
    status["ocr"] = _ocr_status(settings)
    try:
        status["device"] = choose_device(settings)
    except AskAnyError as error:
        status["device"] = f"error: {error}"
    status["missing_required"] = [role for role, state in status["models"].items()
                                  if state["required"] and not state["ok"]]
    status["ok"] = (bool(status["database"].get("ok", True)) and "error" not in str(status["device"])
                    and not status["missing_required"])
    return status


def _ocr_status(settings: Settings) -> dict[str, Any]:
    """Whether images and scanned PDF pages will be read, and by which engine (nothing imported)."""
    from askany.ingestion.loaders.ocr import engine_status

    engine = engine_status()
    if not settings.ocr_enabled:
        return {**engine, "enabled": False, "ok": False, "problem": "OCR_ENABLED=false"}
    return {**engine, "enabled": True, "ok": engine["available"]}


def _database_status(settings: Settings) -> dict[str, Any]:
    from askany.storage.database import open_database
    from askany.storage.store import ChunkStore

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


def remote_summary(state: dict[str, Any]) -> str:
    """One line for a role a server runs: its model, address and dimension, as the server reported."""
    found = state.get("remote") or {}
    dimension = f", {found['dimension']} dimensions" if found.get("dimension") else ""
    return f"{state.get('name')} on {found.get('base')} ({state.get('source')}, reachable{dimension})"


def runtime_summary(state: dict[str, Any]) -> str:
    """`, runtime onnx-int8 (exported 2026-12-01)` for a local encoder, '' for any other role."""
    runtime = state.get("runtime")
    return f", runtime {runtime['summary']}" if runtime else ""
