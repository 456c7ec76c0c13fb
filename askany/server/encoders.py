"""/v1/embeddings and /v1/rerank (Jina/Cohere and TEI shapes): AskAny's encoder models for other tools."""

from __future__ import annotations

import asyncio
import base64
import math
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from askany.core.text import estimate_tokens
from askany.server.catalog import display_name
from askany.server.errors import APIError
from askany.server.schemas import EmbeddingsRequest, RerankDocument, RerankRequest
from askany.service import Service

router = APIRouter()
TOKEN_IDS_HINT = ("This server embeds text, not token ids. LangChain's OpenAIEmbeddings sends token ids by "
                  "default: create it with check_embedding_ctx_length=False")


def _service(request: Request) -> Service:
    return request.app.state.service


def _texts(value: str | list[Any]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if all(isinstance(item, str) for item in value):
        return list(value)
    if all(isinstance(item, int) for item in value) or all(
            isinstance(item, list) and all(isinstance(i, int) for i in item) for item in value):
        raise APIError(400, TOKEN_IDS_HINT, "token_ids_not_supported", "input")
    raise APIError(400, "input must be a string or a list of strings", "invalid_input", "input")


def _check_count(service: Service, count: int, what: str) -> None:
    limit = service.settings.api_max_inputs
    if count > limit:
        raise APIError(413, f"{count} {what} in one request; at most {limit} (API_MAX_INPUTS): send them in "
                            "several requests", "too_many_inputs")


async def on_encoder_thread(request: Request, work: Callable[[], Any]) -> Any:
    """Run model work on the server's one encoder thread: concurrent requests queue for it instead of
    running a dozen forward passes at once on a CPU's few cores (each of which torch already
    parallelizes), and the event loop stays free for streaming answers meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(request.app.state.encoder_thread, work)


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingsRequest, request: Request) -> JSONResponse:
    return await on_encoder_thread(request, lambda: _embeddings(body, _service(request)))


def _embeddings(body: EmbeddingsRequest, service: Service) -> JSONResponse:
    texts = _texts(body.input)
    _check_count(service, len(texts), "inputs")
    dimension = service.embedding_dimension()
    if body.dimensions is not None and body.dimensions != dimension:
        raise APIError(400, f"dimensions={body.dimensions} is not available: the embedding model "
                            f"{display_name(service.settings.embedding_model_name)} makes {dimension}-dimensional "
                            f"vectors (send dimensions={dimension} or leave it out)", "invalid_dimensions",
                       "dimensions")
    result = service.embed(texts)
    as_base64 = body.encoding_format == "base64"
    data = [{"object": "embedding", "index": index,
             "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii") if as_base64
             else vector.tolist()}
            for index, vector in enumerate(result.vectors)]
    # JSONResponse directly: FastAPI's generic encoder would walk every float of every vector.
    return JSONResponse({"object": "list", "data": data, "model": body.model or display_name(result.model),
                         "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens}})


def _document_text(document: str | RerankDocument) -> str:
    return document if isinstance(document, str) else document.text


@router.post("/v1/rerank")
async def rerank(body: RerankRequest, request: Request) -> Any:
    return await on_encoder_thread(request, lambda: _rerank(body, _service(request)))


def _rerank(body: RerankRequest, service: Service) -> Any:
    tei = body.texts is not None and body.documents is None
    documents = [_document_text(d) for d in (body.texts if tei else body.documents or [])]
    _check_count(service, len(documents), "documents")
    order = service.rerank(body.query, documents, top_n=None if tei else body.top_n)
    if tei:  # Hugging Face TEI: a bare list, scores as probabilities unless raw_scores
        return [{"index": index, "score": _logit(score) if body.raw_scores else score,
                 **({"text": documents[index]} if body.return_text else {})} for index, score in order]
    results = [{"index": index, "relevance_score": score,
                **({"document": {"text": documents[index]}} if body.return_documents is not False else {})}
               for index, score in order]
    tokens = sum(estimate_tokens(text) for text in [body.query, *documents])  # an estimate: no LLM needed
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": body.model or display_name(service.settings.reranker_model_name),
            "results": results, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _logit(probability: float) -> float:
    p = min(max(probability, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))

