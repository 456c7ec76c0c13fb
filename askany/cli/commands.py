"""CLI command handlers: call the library, then print a table (or JSON with --json) to stdout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from askany.core.config import get_settings
from askany.core.text import split_tags
from askany.service.service import Service
from askany.service.status import remote_summary, runtime_summary

out = Console(highlight=False, soft_wrap=True)


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """One JSON object for machines, or a human rendering."""
    if as_json:
        print(json.dumps(data, ensure_ascii=False, default=str, indent=2))
    else:
        render(data)


def _service() -> Service:
    return Service(get_settings())


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


# ------------------------------------------------------------------ --check
def check(args: argparse.Namespace) -> int:
    status = _service().status()
    emit(status, args.json, _render_check)
    return 0 if status["ok"] else 1


def _render_check(status: dict[str, Any]) -> None:
    where = status["settings"]
    out.print(f"[bold]Settings[/]: .env file {where['env_file'] or '(none)'}; from environment: "
              f"{', '.join(where['from_environment']) or '-'}; from .env: {', '.join(where['from_env_file']) or '-'}")
    db = status["database"]
    if db.get("ok"):
        kind = "embedded" if db["embedded"] else "external"
        out.print(f"[green]✓[/] Database ({kind}, {db['where']}): PostgreSQL {db['server_version']}, pgvector "
                  f"{db['pgvector']}, {db['chunks']} chunks")
    else:
        out.print(f"[red]✗[/] Database: {db.get('error')}")
    out.print("[bold]Models[/]")
    for role, state in status["models"].items():
        mode = "offline" if state["offline"] else "online allowed"
        if not state["required"] and not state["name"]:
            out.print(f"[yellow]-[/] {role}: not configured (HANLP_TOK_MODEL), jieba is used")
        elif state["ok"] and state["remote"]:
            out.print(f"[green]✓[/] {role}: {escape(remote_summary(state))}")
        elif state["ok"]:
            out.print(f"[green]✓[/] {role}: {state['name']} → {state['path']} ({state['source']}, {mode})"
                      + escape(runtime_summary(state)))
        elif state["remote"]:
            out.print(f"[red]✗[/] {role} ({state['source']}): " + escape(state["problem"]))
        else:
            out.print(f"[red]✗[/] {role} ({mode}): " + escape(state["problem"]))
    ocr = status["ocr"]
    if ocr["ok"]:
        out.print(f"[green]✓[/] OCR (images, scanned PDF pages): {ocr['engine']}")
    else:
        out.print("[yellow]-[/] OCR (images, scanned PDF pages): off, " + escape(ocr["problem"]))
    out.print(f"Keyword tokenizer: {status['tokenizer']}; device: {status['device']}")
    out.print("[green]All required components are ready.[/]" if status["ok"]
              else "[red]Something required is missing: see above for the fix.[/]")


# ------------------------------------------------------------------ --ingest
def ingest(args: argparse.Namespace) -> int:
    service = _service()
    paths = args.ingest or [service.settings.docs_dir]
    report = service.ingest(paths, kb=args.kb, tags=split_tags(args.tags), sync=args.sync, progress=_progress(args))
    data = {
        "kb": report.kb,
        "files": {status: report.count(status) for status in
                  ("new", "changed", "unchanged", "failed", "skipped", "removed", "claimed")},
        "chunks_written": report.chunks_written, "vectors_written": report.vectors_written,
        "chunks_awaiting_vectors": report.awaiting_vectors, "embedding_note": report.embedding_note,
        "seconds": round(report.seconds, 3), "chunks_per_second": round(report.chunks_per_second, 1),
        "problems": [asdict(r) for r in report.results if r.status in ("failed", "skipped")],
        "notices": report.notices,
        "ok": not report.failed,
    }
    emit(data, args.json, _render_ingest)
    return 1 if report.failed else 0


def _render_ingest(data: dict[str, Any]) -> None:
    files = data["files"]
    table = Table("new", "changed", "unchanged", "failed", "skipped", "removed", "chunks", "time",
                  "chunks/s", title=f"Ingestion into knowledge base '{data['kb']}'")
    table.add_row(*(str(files[key]) for key in ("new", "changed", "unchanged", "failed", "skipped", "removed")),
                  str(data["chunks_written"]), f"{data['seconds']:.1f}s", f"{data['chunks_per_second']:.1f}")
    out.print(table)
    if data["problems"]:
        out.print(f"[bold]Files not ingested[/] ({len(data['problems'])}):")
        for problem in data["problems"]:
            out.print(f"  {problem['status']:7} {problem['path']}: {problem['reason']}", markup=False)
    if files["claimed"]:
        out.print(f"{files['claimed']} files were left to another ingestion run that was storing them at the "
                  "same time.")
    if data["embedding_note"]:
        out.print(f"[yellow]{data['embedding_note']}[/]")
    for notice in data["notices"]:
        print(f"notice: {notice}", file=sys.stderr)
    if data["chunks_awaiting_vectors"]:
        out.print(f"{data['chunks_awaiting_vectors']} chunks await vectors: keyword search works now; run the "
                  f"ingestion again once the embedding model is available to add them.")
    out.print("[red]Some files failed: see the table above.[/]" if not data["ok"]
              else "[green]Done.[/]")


# ------------------------------------------------------------------ index maintenance
def reembed(args: argparse.Namespace) -> int:
    report = _service().reembed(progress=_progress(args))
    data = {"vectors_written": report.vectors_written, "chunks_awaiting_vectors": report.awaiting_vectors,
            "seconds": round(report.seconds, 3)}
    emit(data, args.json, lambda d: out.print(f"Re-embedded {d['vectors_written']} chunks in {d['seconds']}s."))
    return 0


def create_index(args: argparse.Namespace) -> int:
    data = {"hnsw_index_built": _service().rebuild_vector_index()}
    emit(data, args.json, lambda d: out.print(
        "HNSW index rebuilt." if d["hnsw_index_built"] else "No vectors stored yet: nothing to index."))
    return 0


def delete_doc(args: argparse.Namespace) -> int:
    result = _service().delete_document(args.kb, args.delete_doc)
    emit(asdict(result), args.json, lambda d: out.print(
        f"Deleted {d['source']} from '{d['kb']}'." if d["deleted"] else
        f"No document {d['source']} in knowledge base '{d['kb']}' (see --check-db)."))
    return 0 if result.deleted else 1


def create_kb(args: argparse.Namespace) -> int:
    kb = _service().create_kb(args.create_kb)
    emit({"kb": kb, "created": True}, args.json, lambda d: out.print(
        f"Created the empty knowledge base '{d['kb']}'; add documents with --ingest PATH --kb {d['kb']}.",
        markup=False))
    return 0


def delete_kb(args: argparse.Namespace) -> int:
    result = _service().delete_kb(args.delete_kb)
    emit(asdict(result), args.json, lambda d: out.print(
        f"Deleted knowledge base '{d['kb']}': {d['documents']} documents, {d['chunks']} chunks, "
        f"{d['uploads_removed']} uploaded files.", markup=False))
    return 0


def check_db(args: argparse.Namespace) -> int:
    emit(_service().database_report(), args.json, _render_check_db)
    return 0


def _render_check_db(data: dict[str, Any]) -> None:
    table = Table("knowledge base", "documents", "FAQ files", "chunks", title="Database contents")
    for kb in data["knowledge_bases"]:
        table.add_row(kb["kb"], str(kb["documents"]), str(kb["faq_files"]), str(kb["chunks"]))
    out.print(table)
    model = data["vectors_made_by"]
    out.print(f"Vectors: {'made by ' + model[0] + f' ({model[1]} dims)' if model else 'none yet'}; "
              f"awaiting vectors: {data['chunks_awaiting_vectors']}; HNSW index: "
              f"{'present' if data['hnsw_index'] else 'absent'}; keyword terms: {data['keyword_analyzer']}")
    for sample in data["samples"]:
        out.print(f"- {sample['source']} {' > '.join(sample['heading_path'])}: {sample['text']}")


# ------------------------------------------------------------------ --query
def _query_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"query_type": args.query_type, "mode": args.mode, "top_k": args.top_k,
            "rerank": not args.no_rerank, "kbs": [args.kb] if args.kb else None,
            "tags": split_tags(args.tags), "thinking": args.think}


def query(args: argparse.Namespace) -> int:
    question = args.query_text if args.query_text is not None else args.query
    if question is True or question is None:
        from askany.core.errors import AskAnyError

        raise AskAnyError('No question given; pass it as --query-text "..."')
    service = _service()
    stream_to_terminal = not args.json and sys.stdout.isatty()
    result = None
    shown_thinking = False
    for kind, value in service.ask_stream(question, **_query_options(args)):
        if kind == "done":
            result = value
        elif stream_to_terminal:
            if kind == "thinking" and not shown_thinking:
                out.print("[dim]思考过程：[/]", end="")
                shown_thinking = True
            out.print(value, end="", style="dim" if kind == "thinking" else None, markup=False)
    assert result is not None
    data = qa_result_dict(result)
    if args.json:
        emit(data, True, lambda _: None)
    else:
        _render_answer(data, already_streamed=stream_to_terminal)
    return 0


def qa_result_dict(result: Any) -> dict[str, Any]:
    answer = result.answer
    return {
        "question": result.question, "query_type": result.query_type, "routed_to": result.routed_to,
        "answer": answer.text, "thinking": answer.thinking, "answer_kind": answer.kind,
        "citations": answer.citations, "notices": result.notices, "tags": result.tags,
        "sources": [asdict(source) for source in result.sources],
        "timings": {name: round(seconds, 4) for name, seconds in result.timings.items()},
    }


def _render_answer(data: dict[str, Any], already_streamed: bool) -> None:
    if not already_streamed:
        if data["thinking"]:
            out.print(f"[dim]思考过程：{data['thinking']}[/]")
        out.print(data["answer"], markup=False)
    else:
        out.print()
    labels = {"extracted": "（摘录自资料，未经大模型生成）", "faq": "（来自常见问题库）", "none": ""}
    if data["answer_kind"] in labels and labels[data["answer_kind"]]:
        out.print(f"[yellow]{labels[data['answer_kind']]}[/]")
    for notice in data["notices"]:
        print(f"notice: {notice}", file=sys.stderr)
    if data["sources"]:
        out.print("[bold]Sources[/] (* = cited)")
    for source in data["sources"]:
        mark = "*" if source["number"] in data["citations"] else " "
        where = " > ".join(source["heading_path"]) or source["title"]
        where += "".join(f" · {kind} {number}" for kind, number in source.get("location", {}).items())
        scores = ", ".join(f"{stage} {value['score']:.3g} (#{value['rank']})"
                           for stage, value in source["stages"].items())
        out.print(f"[{source['number']}]{mark} {Path(source['source']).name} · {where} · {scores}", markup=False)
        snippet = " ".join(source["text"].split())[:120]
        out.print(f"     {snippet}", markup=False, style="dim")
    out.print("Time: " + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in data["timings"].items()))


# ------------------------------------------------------------------ --export-feedback
def export_feedback(args: argparse.Namespace) -> int:
    written, left_out = _service().export_feedback(args.export_feedback, args.rating)
    data = {"file": str(args.export_feedback), "questions": written, "left_out_without_source": left_out,
            "rating": args.rating or "all"}
    emit(data, args.json, lambda d: out.print(
        f"Wrote {d['questions']} questions ({d['rating']} feedback) to {d['file']}"
        + (f"; {d['left_out_without_source']} answers without a source document were left out"
           if d["left_out_without_source"] else "") + ". Check the doc_id of 👎 questions before using them "
        "as ground truth; then: python -m askany.main --eval " + d["file"], markup=False))
    return 0


# ------------------------------------------------------------------ --eval
def evaluate(args: argparse.Namespace) -> int:
    from askany.service import read_queries, scores_as_dict

    queries = read_queries(args.eval)
    scores, kb, report = _service().evaluate(queries, docs=args.docs, kb=args.kb, progress=_progress(args))
    if report is not None and report.failed:
        print(f"warning: {len(report.failed)} files of {args.docs} failed to ingest", file=sys.stderr)
    data = {"questions": len(queries), "kb": kb, "setups": scores_as_dict(scores)}
    emit(data, args.json, _render_eval)
    return 0


def _render_eval(data: dict[str, Any]) -> None:
    table = Table("setup", "hit@1", "hit@5", "hit@10", "MRR", "answer-in-context@5", "time",
                  title=f"Retrieval on {data['questions']} questions (kb: {data['kb'] or 'all'})")
    for row in data["setups"]:
        if row["unavailable"]:
            table.add_row(row["setup"], "-", "-", "-", "-", "-", f"unavailable: {row['unavailable']}")
        else:
            table.add_row(row["setup"], *(f"{row[key]:.3f}" for key in
                                          ("hit1", "hit5", "hit10", "mrr", "answer_in_context5")),
                          f"{row['seconds']:.1f}s")
    out.print(table)
