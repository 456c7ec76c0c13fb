"""All AskAny settings: one pydantic-settings class read from `.env` and the environment.

Every field here is documented, with its default, in `.env.example`. The few environment
variables that are not settings (read by third-party libraries themselves, and ASKANY_ENV_FILE)
are handled in `askany.core.environment`.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from askany.core import environment
from askany.core.errors import ConfigError

# An ALLOWED_HOSTS name (or IPv4 address): "*" for any host, a leading "*." for every subdomain.
HOST_NAME = re.compile(r"\*|(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*", re.IGNORECASE)


def env_file_path() -> Path:
    """The `.env` file settings are read from (``ASKANY_ENV_FILE`` overrides `./.env`)."""
    return environment.env_file()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- models ---
    embedding_model: str = "BAAI/bge-m3"
    reranker_model: str = "BAAI/bge-reranker-v2-m3"
    llm_model: str = "Qwen/Qwen3-0.6B"
    hanlp_tok_model: str = ""
    embedding_local_files_only: bool = False
    reranker_local_files_only: bool = False
    llm_local_files_only: bool = False
    models_dir: Path = Path("models")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    user_dict: Path | None = None
    hub_timeout_seconds: float = Field(5.0, gt=0)
    hf_hub_offline: bool = False
    # The HanLP tokenizer archive `--download-models hanlp` fetches when HANLP_TOK_MODEL names none
    # (empty: HanLP's COARSE_ELECTRA_SMALL_ZH). Keeps the ASKANY_ prefix it had as a plain variable.
    askany_hanlp_tok_url: str = ""

    embedding_enabled: bool = True
    embedding_batch_size: int = Field(16, ge=1)
    reranker_enabled: bool = True
    rerank_batch_size: int = Field(4, ge=1)  # CPU: one padded batch of 10 pairs costs 1.4x four small ones (docs/cpu-speed.md)
    # Both chosen from the curves in docs/cpu-speed.md: cutting passages below the chunk size hides
    # answers from the reranker; past 10 passages recall hardly grows while the cost does, linearly.
    rerank_max_length: int = Field(512, ge=16)
    rerank_top_n: int = Field(10, ge=1, le=200)
    # How the local encoders run (askany/models/runtime.py): torch (fp32 on a CPU), torch in bf16
    # (torch-bf16), or ONNX Runtime in fp32 (onnx) or int8 (onnx-int8), exported once from the model
    # folder. auto: torch-bf16 on a CPU with AMX, else onnx-int8; torch on a GPU.
    embedding_runtime: Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"] = "auto"
    reranker_runtime: Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"] = "auto"

    # --- models on a server (askany/models/remote.py): the three roles read alike ---
    # local: the model folder above; openai: an OpenAI-compatible /v1/embeddings (TEI, vLLM,
    # Xinference, Infinity, another AskAny --serve)
    embedding_backend: Literal["local", "openai"] = "local"
    embedding_api_base: str = ""  # e.g. http://gpu-box:9100/v1
    embedding_api_key: str = ""
    embedding_api_model: str = ""  # empty: the name in EMBEDDING_MODEL
    embedding_api_timeout_seconds: float = Field(60.0, gt=0)
    embedding_api_retries: int = Field(3, ge=0, le=10)
    embedding_api_concurrency: int = Field(4, ge=1, le=64)  # batches in flight
    # openai: the Jina/Cohere /v1/rerank shape; tei: Hugging Face TEI's /rerank
    reranker_backend: Literal["local", "openai", "tei"] = "local"
    reranker_api_base: str = ""
    reranker_api_key: str = ""
    reranker_api_model: str = ""
    reranker_api_timeout_seconds: float = Field(30.0, gt=0)
    reranker_api_retries: int = Field(2, ge=0, le=10)
    reranker_api_concurrency: int = Field(4, ge=1, le=64)

    # --- answering ---
    llm_backend: Literal["transformers", "openai", "none"] = "transformers"
    llm_api_base: str = "http://127.0.0.1:8000/v1"
    llm_api_key: str = ""
    llm_api_model: str = ""
    llm_api_timeout_seconds: float = Field(120.0, gt=0)
    llm_api_retries: int = Field(1, ge=0, le=10)  # only before the first token: a reply is never resent
    llm_max_new_tokens: int = Field(512, ge=1)
    llm_temperature: float = Field(0.7, ge=0)
    llm_top_p: float = Field(0.8, gt=0, le=1)
    llm_enable_thinking: bool = False
    llm_context_window: int = Field(0, ge=0)
    # The local LLM's weights and compute (askany/models/precision.py). auto: bf16 on a GPU that has it
    # (else float16), float16 on MPS, on a CPU bfloat16 where it has AMX, else float32.
    llm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    # --- storage ---
    data_dir: Path = Path("data")
    database_url: str = ""
    postgres_host: str = ""
    postgres_port: int = Field(5432, ge=1, le=65535)
    postgres_user: str = "postgres"
    postgres_password: str = ""
    postgres_db: str = "askany"

    # --- ingestion ---
    docs_dir: Path = Path("ingest/samples")
    default_kb: str = "default"
    chunk_size: int = Field(384, ge=32)
    chunk_overlap: int = Field(48, ge=0)
    max_file_size_mb: float = Field(50.0, gt=0)
    # What one file may cost to parse (askany/ingestion/loaders/limits.py): zip-based files (DOCX)
    # by unpacked size, members and compression ratio, XML and HTML by elements, PDFs by pages.
    max_unpacked_mb: float = Field(200.0, gt=0)
    max_compression_ratio: float = Field(100.0, gt=1)
    max_archive_members: int = Field(10_000, ge=1)
    max_xml_elements: int = Field(2_000_000, ge=1)
    max_html_elements: int = Field(200_000, ge=1)
    max_pdf_pages: int = Field(2_000, ge=1)
    # OCR (askany/ingestion/loaders/ocr.py) reads images and PDF pages without a text layer when the
    # rapidocr and onnxruntime packages are installed; OCR_MAX_PAGES bounds the pages one file may
    # send through it, MAX_IMAGE_MEGAPIXELS the size of one image (a decompression bomb is refused).
    ocr_enabled: bool = True
    ocr_max_pages: int = Field(100, ge=1)
    max_image_megapixels: float = Field(60.0, gt=0)
    ingest_group_chunks: int = Field(0, ge=0)  # 0: automatic (see vector_group_chunks)
    ingest_workers: int = Field(-1, ge=-1, le=64)
    follow_symlinks: bool = False  # links out of the ingested folders are skipped unless true
    hnsw_m: int = Field(16, ge=2, le=100)
    hnsw_ef_construction: int = Field(64, ge=4, le=1000)

    # --- retrieval ---
    hnsw_ef_search: int = Field(100, ge=1, le=1000)
    keyword_top_n: int = Field(50, ge=1, le=1000)
    bm25_k1: float = Field(1.2, ge=0, le=10)
    bm25_b: float = Field(0.75, ge=0, le=1)
    keyword_cache_mb: float = Field(256.0, ge=0)
    vector_top_n: int = Field(50, ge=1, le=1000)
    rrf_k: int = Field(2, ge=0)
    keyword_weight: float = Field(1.0, ge=0)
    vector_weight: float = Field(0.3, ge=0)
    top_k: int = Field(5, ge=1, le=100)
    faq_score_threshold: float = Field(0.6, ge=0)

    # --- web page ---
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(7860, ge=1, le=65535)
    ui_language: Literal["zh", "en"] = "zh"
    upload_max_mb: float = Field(50.0, gt=0)
    # "user:password" pairs, comma-separated; empty: API_KEY as the password, or no login without keys
    ui_auth: str = ""

    # --- both HTTP doors (--ui, --serve) ---
    # Host names served beyond the loopback names and the bound address, comma-separated
    allowed_hosts: str = ""

    # --- HTTP API (--serve) ---
    api_host: str = "127.0.0.1"
    api_port: int = Field(9100, ge=1, le=65535)
    api_key: str = ""  # one or more keys, comma-separated; empty: no key needed
    api_max_body_mb: float = Field(16.0, gt=0)
    api_max_inputs: int = Field(2048, ge=1)  # texts per embeddings request, documents per rerank request
    api_heartbeat_seconds: float = Field(10.0, gt=0)

    @field_validator("data_dir", "models_dir", "docs_dir")
    @classmethod
    def _must_not_be_a_file(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, but a folder is needed")
        return value

    @field_validator("user_dict", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("ui_auth")
    @classmethod
    def _logins_are_pairs(cls, value: str) -> str:
        if any(not user.strip() or not password for user, _, password in
               (entry.partition(":") for entry in _items(value))):
            raise ValueError("write each login as user:password, comma-separated")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names_only(cls, value: str) -> str:
        for entry in _items(value):
            if not (HOST_NAME.fullmatch(entry) or _is_ip_address(entry.strip("[]"))):
                raise ValueError(f"{entry!r} is not a host name: list names or addresses without scheme, "
                                 "port or path (a leading '*.' allows subdomains, '*' any host)")
        return value

    @field_validator("embedding_api_base", "reranker_api_base", "llm_api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise ValueError("write the server's address as http://host:port/path (e.g. http://gpu-box:9100/v1)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than CHUNK_SIZE ({self.chunk_size})"
            )
        return self

    @model_validator(mode="after")
    def _remote_roles_have_a_server(self) -> Settings:
        for role, backend in (("embedding", self.embedding_backend), ("reranker", self.reranker_backend)):
            if backend != "local" and not getattr(self, f"{role}_api_base"):
                raise ValueError(f"{role.upper()}_BACKEND={backend} needs {role.upper()}_API_BASE, the server's "
                                 f"address (e.g. http://gpu-box:9100/v1)")
        return self

    @property
    def embedding_model_name(self) -> str:
        """The model that makes the vectors: what the stored-vector identity is taken from."""
        if self.embedding_backend == "local":
            return self.embedding_model
        return self.embedding_api_model or self.embedding_model

    @property
    def vector_group_chunks(self) -> int:
        """Chunks embedded and committed together: INGEST_GROUP_CHUNKS, or when it is 0, 256 with a
        local model (a crash loses at most minutes of CPU work) and 2,048 with a model on a server,
        which embeds that many in seconds (bigger groups mean fewer keyword segments to merge:
        10,728 chunks from an instant server went in at 483 chunks/s in groups of 256, 518 at 2,048)."""
        if self.ingest_group_chunks:
            return self.ingest_group_chunks
        return 256 if self.embedding_backend == "local" else 2048

    @property
    def reranker_model_name(self) -> str:
        if self.reranker_backend == "local":
            return self.reranker_model
        return self.reranker_api_model or self.reranker_model

    @property
    def uses_embedded_database(self) -> bool:
        return not (self.database_url or self.postgres_host)

    @property
    def api_keys(self) -> list[str]:
        return [key.strip() for key in self.api_key.split(",") if key.strip()]

    @property
    def ui_logins(self) -> list[tuple[str, str]]:
        return [(user.strip(), password) for user, _, password in (e.partition(":") for e in _items(self.ui_auth))]

    @property
    def allowed_host_names(self) -> list[str]:
        return [entry.lower() for entry in _items(self.allowed_hosts)]

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"


# Settings whose values an error message must not repeat.
SECRETS = frozenset({"ui_auth", "api_key", "llm_api_key", "embedding_api_key", "reranker_api_key",
                     "postgres_password", "database_url"})


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _items(value: str) -> list[str]:
    """The non-empty entries of a comma-separated setting."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _one_sentence(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "settings"
        reason = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        secret = item["loc"] and item["loc"][0] in SECRETS
        shown = f" (got {given!r})" if given is not None and not isinstance(given, dict) and not secret else ""
        problems.append(f"{name}{shown}: {reason}")
    return "Invalid setting " + "; ".join(problems) + f". Fix it in {env_file_path()} or the environment."


def load_settings(**overrides: object) -> Settings:
    """Read settings from `.env` and the environment; a wrong value raises ConfigError."""
    try:
        return Settings(_env_file=env_file_path(), **overrides)
    except ValidationError as error:
        raise ConfigError(_one_sentence(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def setting_sources(settings: Settings) -> dict[str, str]:
    """Where each setting's value came from: environment, the .env file, or default."""
    from dotenv import dotenv_values

    path = env_file_path()
    file_values = {k.lower() for k in dotenv_values(path)} if path.is_file() else set()
    from_environment = environment.names()
    sources = {}
    for name in Settings.model_fields:
        if name in from_environment:
            sources[name] = "environment"
        elif name in file_values:
            sources[name] = str(path)
        else:
            sources[name] = "default"
    return sources
