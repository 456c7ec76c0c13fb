"""The model ids the API offers and what each one means.

RAG ids answer from the knowledge bases: `askany` (AUTO: FAQ first, then documents), `askany-faq`,
`askany-docs`, each optionally narrowed to one knowledge base with `@<kb>` (`askany@ops`,
`askany-docs@ops`). The LLM, embedding and reranker are listed under their model names (a local
folder under its folder name). Clients that prefix a provider (`openai/askany`) are understood.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import PurePath

from askany.service import Service

RAG_KINDS = {"askany": "AUTO", "askany-faq": "FAQ", "askany-docs": "DOCS"}
_RAG_ID = re.compile(r"^(?:[\w.-]+/)?(askany(?:-faq|-docs)?)(?:@(.+))?$", re.IGNORECASE)
STARTED = int(time.time())


@dataclass
class RagModel:
    query_type: str
    kb: str | None


def display_name(setting: str) -> str:
    """A model setting as a model id: a hub id as it is, a local folder by its name."""
    setting = setting.strip().rstrip("/\\")
    if setting.startswith(("/", ".", "~")) or "\\" in setting or setting.count("/") > 1:
        return PurePath(setting).name
    return setting


def rag_model(model: str) -> RagModel | None:
    match = _RAG_ID.match(model.strip())
    if match is None:
        return None
    return RagModel(RAG_KINDS[match.group(1).lower()], match.group(2))


def _same(model: str, setting: str) -> bool:
    asked = model.strip().lower()
    names = {setting.strip().lower(), display_name(setting).lower()}
    return asked in names or any(asked.endswith("/" + name) or name.endswith("/" + asked) for name in names)


def llm_name(service: Service) -> str:
    settings = service.settings
    if settings.llm_backend == "openai" and settings.llm_api_model:
        return settings.llm_api_model
    return display_name(settings.llm_model)


def is_llm(service: Service, model: str) -> bool:
    if service.settings.llm_backend == "none":
        return False
    return _same(model, llm_name(service)) or _same(model, service.settings.llm_model)


def model_list(service: Service) -> list[dict]:
    settings = service.settings
    ids = list(RAG_KINDS)
    try:
        ids += [f"askany@{kb}" for kb in service.kb_names()]
    except Exception:  # noqa: BLE001 - the list must answer even while the database is down
        pass
    owned = [(model_id, "askany") for model_id in ids]
    if settings.llm_backend != "none":
        owned.append((llm_name(service), "askany-llm"))
    if settings.embedding_enabled:
        owned.append((display_name(settings.embedding_model_name), "askany-embedding"))
    if settings.reranker_enabled:
        owned.append((display_name(settings.reranker_model_name), "askany-reranker"))
    seen: set[str] = set()
    return [{"id": model_id, "object": "model", "created": STARTED, "owned_by": owner}
            for model_id, owner in owned if not (model_id in seen or seen.add(model_id))]
