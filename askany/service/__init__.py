"""The service layer: the one API the CLI, the chat page and the HTTP server call (see service.py)."""

from askany.generation import GenerationOptions
from askany.ingestion.pipeline import FileResult, IngestReport
from askany.retrieval.evaluation import read_queries, scores_as_dict
from askany.service.conversation import (
    FOLLOW_UP_PREFIXES,
    HISTORY_ANSWER_CHARS,
    HISTORY_CHARS,
    HISTORY_TURNS,
    SHORT_FOLLOW_UP_CHARS,
    Turn,
    history_for_model,
    is_follow_up,
    message_text,
    retrieval_query,
    strip_citations,
    turns_from_messages,
)
from askany.service.encoders import Embeddings
from askany.service.knowledge_bases import (
    MAX_KB_NAME_CHARS,
    KbDeleteResult,
    KnowledgeBaseError,
    check_kb_name,
)
from askany.service.qa import QUERY_TYPES, QAResult, Source
from askany.service.service import DeleteResult, Service
from askany.service.uploads import UploadError, safe_upload_name, upload_destination

__all__ = ["FOLLOW_UP_PREFIXES", "HISTORY_ANSWER_CHARS", "HISTORY_CHARS", "HISTORY_TURNS", "QUERY_TYPES",
           "SHORT_FOLLOW_UP_CHARS", "DeleteResult", "Embeddings", "KbDeleteResult", "KnowledgeBaseError",
           "MAX_KB_NAME_CHARS", "check_kb_name", "GenerationOptions", "FileResult", "IngestReport", "QAResult", "Service", "Source",
           "Turn", "UploadError", "history_for_model", "is_follow_up", "message_text", "read_queries", "retrieval_query",
           "safe_upload_name", "scores_as_dict", "strip_citations", "turns_from_messages", "upload_destination"]
