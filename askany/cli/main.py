"""The command line: `python -m askany.main --check | --ingest | --query | --eval | --ui | ...`.

Results go to stdout (a table, or one JSON object with --json); diagnostics and
progress go to stderr. A problem the user can fix ends the command with one
sentence on stderr and exit status 2; failed files during ingestion give 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import warnings
from pathlib import Path

from askany.core import environment
from askany.core.errors import AskAnyError

log = logging.getLogger("askany")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m askany.main",
        description="AskAny: ask your Chinese documents questions, offline.")
    actions = parser.add_argument_group("what to do (several may be combined: ingest, then query)")
    actions.add_argument("--check", action="store_true", help="show the state of every component")
    actions.add_argument("--ingest", nargs="*", metavar="PATH", type=Path,
                         help="ingest files or folders (default: DOCS_DIR)")
    actions.add_argument("--check-db", action="store_true", help="counts per knowledge base, samples, index state")
    actions.add_argument("--create-index", action="store_true", help="(re)build the HNSW index after a bulk load")
    actions.add_argument("--reembed", action="store_true",
                         help="drop every stored vector and embed all chunks again with EMBEDDING_MODEL")
    actions.add_argument("--delete-doc", metavar="SOURCE", help="delete one document (its path) from --kb")
    actions.add_argument("--create-kb", metavar="NAME", help="create an empty knowledge base (an upload target)")
    actions.add_argument("--delete-kb", metavar="NAME",
                         help="delete a knowledge base: its documents, chunks, vectors, keyword index, uploads")

    ingest = parser.add_argument_group("ingestion")
    ingest.add_argument("--kb", help="knowledge base name (default: DEFAULT_KB)")
    ingest.add_argument("--tags", help="comma-separated tags for the ingested documents, or a query filter")
    ingest.add_argument("--sync", action="store_true", help="also remove documents whose files are gone")

    query = parser.add_argument_group("asking")
    query.add_argument("--query", nargs="?", const=True, metavar="TEXT",
                       help="answer a question (the text here or in --query-text)")
    query.add_argument("--query-text", metavar="TEXT", help="the question")
    query.add_argument("--query-type", default="AUTO", type=str.upper, choices=["AUTO", "FAQ", "DOCS"],
                       help="AUTO: FAQ first, then documents (default)")
    query.add_argument("--top-k", type=int, metavar="K", help="number of passages (default: TOP_K)")
    query.add_argument("--mode", default="hybrid", choices=["hybrid", "vector", "keyword"])
    query.add_argument("--no-rerank", action="store_true", help="skip the cross-encoder reranker")
    query.add_argument("--think", action=argparse.BooleanOptionalAction, default=None,
                       help="let Qwen3 think before answering (default: LLM_ENABLE_THINKING)")
    query.add_argument("--eval", type=Path, metavar="QUERIES.jsonl", help="evaluate retrieval on a question set")
    query.add_argument("--docs", type=Path, metavar="DIR", help="with --eval: ingest DIR into its own knowledge base")
    query.add_argument("--export-feedback", type=Path, metavar="FILE.jsonl",
                       help="write the page's 👍/👎 feedback as a question set in the --eval format")
    query.add_argument("--rating", choices=["up", "down"], help="with --export-feedback: only 👍 or only 👎")

    serving = parser.add_argument_group("serving")
    serving.add_argument("--ui", action="store_true", help="serve the chat page alone (UI_HOST:UI_PORT)")
    serving.add_argument("--serve", action="store_true",
                         help="serve the OpenAI-compatible API under /v1 and the chat page at / (API_HOST:API_PORT)")
    serving.add_argument("--host", metavar="HOST", help="with --ui or --serve: the address to listen on")
    serving.add_argument("--port", type=port_number, metavar="PORT", help="with --ui or --serve: the port to listen on")

    models = parser.add_argument_group("models")
    models.add_argument("--download-models", nargs="*", metavar="ROLE",
                        help="download models (embedding reranker llm hanlp; default: all) into MODELS_DIR")
    models.add_argument("--source", default="hf", choices=["hf", "modelscope"], help="where to download from")
    models.add_argument("--endpoint", metavar="URL", help="hub endpoint or mirror (default: HF_ENDPOINT)")
    models.add_argument("--models-dir", type=Path, metavar="DIR", help="override MODELS_DIR")
    models.add_argument("--write-env", action="store_true", help="write the offline settings into .env")
    models.add_argument("--verify-models", action="store_true", help="check every model folder")
    models.add_argument("--import-hf-cache", nargs="*", metavar="MODEL_ID",
                        help="copy models from the Hugging Face cache into MODELS_DIR")
    models.add_argument("--export-models", type=Path, metavar="FILE.tar", help="bundle the model folders")
    models.add_argument("--import-models", type=Path, metavar="FILE.tar", help="unpack a model bundle")

    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    output.add_argument("--no-progress", action="store_true", help="hide progress bars")
    output.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    return parser


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("pgserver", "httpx", "urllib3", "jieba", "sentence_transformers", "transformers",
                  "huggingface_hub", "psycopg.pool", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    warnings.filterwarnings("ignore", module="platformdirs")
    environment.default_runtime_dir()


# (options that ask for it, module in askany.cli, handler), run in this order when given.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("check",), "commands", "check"), (("create_kb",), "commands", "create_kb"),
    (("ingest",), "commands", "ingest"), (("reembed",), "commands", "reembed"),
    (("delete_doc",), "commands", "delete_doc"), (("delete_kb",), "commands", "delete_kb"),
    (("create_index",), "commands", "create_index"),
    (("check_db",), "commands", "check_db"), (("query", "query_text"), "commands", "query"),
    (("export_feedback",), "commands", "export_feedback"), (("eval",), "commands", "evaluate"), (("download_models",), "model_commands", "download"),
    (("import_hf_cache",), "model_commands", "import_cache"), (("import_models",), "model_commands", "import_bundle"),
    (("export_models",), "model_commands", "export"), (("verify_models",), "model_commands", "verify"),
]


def given(value: object) -> bool:
    """An option the user gave: a flag that is set, a value, or an empty list (`--ingest` alone)."""
    return value is not None and value is not False and value != ""


def run(args: argparse.Namespace) -> int:
    status = 0
    ran = False
    for options, module, handler in COMMANDS:
        if any(given(getattr(args, option)) for option in options):
            status = max(status, getattr(importlib.import_module(f"askany.cli.{module}"), handler)(args))
            ran = True
    if args.serve:
        from askany.server import serve as serve_api

        serve_api(host=args.host, port=args.port)
        ran = True
    elif args.ui:
        from askany.web import serve

        serve(host=args.host, port=args.port)
        ran = True
    if not ran:
        build_parser().print_help(sys.stderr)
        return 2
    return status


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM/SIGHUP end a command like Ctrl-C, so cleanup and atexit still run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if threading.current_thread() is threading.main_thread():
        for number in (getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)):
            if signal.getsignal(number) == signal.SIG_DFL:  # not an ignored SIGHUP (nohup)
                signal.signal(number, _interrupt)
    try:
        return run(args)
    except AskAnyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted: everything finished so far is stored; run the same command again to resume.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
