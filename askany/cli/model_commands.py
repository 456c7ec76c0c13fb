"""CLI handlers for model management: call the model-management API (`askany.models.manager`), print a table (or JSON with --json).

Expected argparse attributes: `download_models` (list of roles, empty = all),
`source` ("hf" or "modelscope"), `endpoint`, `models_dir` (Path or None),
`write_env` (bool), `verify_models` (bool), `import_hf_cache` (list of repo ids,
empty = the configured ones), `hf_cache_dir` (optional), `export_models` and
`import_models` (paths), `json` (bool) and `no_progress` (bool, optional).
Each handler returns the exit status: 0 when everything asked for is in place.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from rich.table import Table

from askany.cli.commands import emit, out
from askany.core.config import Settings, env_file_path, get_settings
from askany.models.manager import (
    DownloadResult,
    download_models,
    env_lines,
    export_models,
    human_size,
    import_hf_cache,
    import_models,
    verify_models,
    write_env,
)


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def _models_dir(args: argparse.Namespace) -> Any:
    return getattr(args, "models_dir", None)


# ------------------------------------------------------------------ --download-models
def download(args: argparse.Namespace) -> int:
    settings = get_settings()
    results = download_models(settings, args.download_models or None, source=getattr(args, "source", None) or "hf",
                              endpoint=getattr(args, "endpoint", None), models_dir=_models_dir(args),
                              progress=_progress(args))
    return _report_placed(args, settings, results, "Model downloads")


# ------------------------------------------------------------------ --import-hf-cache
def import_cache(args: argparse.Namespace) -> int:
    settings = get_settings()
    results = import_hf_cache(settings, args.import_hf_cache or None, cache_dir=getattr(args, "hf_cache_dir", None),
                              models_dir=_models_dir(args), progress=_progress(args))
    return _report_placed(args, settings, results, "Models copied from the Hugging Face cache")


# ------------------------------------------------------------------ --import-models
def import_bundle(args: argparse.Namespace) -> int:
    settings = get_settings()
    results = import_models(settings, args.import_models, models_dir=_models_dir(args), progress=_progress(args))
    return _report_placed(args, settings, results, f"Models imported from {args.import_models}")


def _report_placed(args: argparse.Namespace, settings: Settings, results: list[DownloadResult], title: str) -> int:
    """The folders put in place, then the .env lines that use them offline (written with --write-env)."""
    lines = env_lines(settings, results)
    written = str(write_env(lines, env_file_path())) if getattr(args, "write_env", False) and lines else None
    data = {
        "models": [{**asdict(result), "ok": result.ok} for result in results],
        "env": lines,
        "env_written": written,
        "ok": all(result.ok or result.status == "skipped" for result in results),
    }
    emit(data, args.json, lambda d: _render_placed(d, title))
    return 0 if data["ok"] else 1


def _render_placed(data: dict[str, Any], title: str) -> None:
    table = Table("role", "model", "status", "folder", "files", "size", "time", title=title)
    for model in data["models"]:
        colour = "green" if model["ok"] else ("yellow" if model["status"] == "skipped" else "red")
        status = f"[{colour}]{model['status']}[/]" + (f": {model['note']}" if model["note"] else "")
        table.add_row(model["role"] or "-", model["name"], status, model["path"] or "-", str(model["files"]),
                      human_size(model["bytes"]), f"{model['seconds']:.1f}s")
    out.print(table)
    if data["env_written"]:
        out.print(f"Wrote {len(data['env'])} settings to {data['env_written']}: AskAny now loads these folders "
                  f"offline.")
    elif data["env"]:
        out.print("Add these lines to your .env (or run again with --write-env) to use them offline:")
        for line in data["env"]:
            out.print(f"  {line}", markup=False)


# ------------------------------------------------------------------ --verify-models
def verify(args: argparse.Namespace) -> int:
    rows = verify_models(get_settings(), models_dir=_models_dir(args), progress=_progress(args))
    data = {"models": [asdict(row) for row in rows], "ok": all(row.ok for row in rows)}
    emit(data, args.json, _render_verify)
    return 0 if data["ok"] else 1


def _mark(ok: bool | None, note: str) -> str:
    if ok is None:
        return f"[yellow]-[/] {note}"
    return f"[green]✓[/] {note}" if ok else f"[red]✗[/] {note}"


def _render_verify(data: dict[str, Any]) -> None:
    table = Table("role", "path", "files", "config", "weights", "checksums", "result", title="Model folders")
    for row in data["models"]:
        if row["path"] is None and row["ok"]:
            table.add_row(row["role"], "-", f"[yellow]{row['files']}[/]", "-", "-", "-", "[green]ok[/]")
            continue
        table.add_row(row["role"], row["path"] or "-", _mark(row["files_ok"], row["files"]),
                      _mark(row["config_ok"], row["config"]), _mark(row["weights_ok"], row["weights"]),
                      _mark(row["checksums_ok"], row["checksums"]),
                      "[green]ok[/]" if row["ok"] else "[red]failed[/]")
    out.print(table)
    for row in data["models"]:
        if row["problem"]:
            out.print(f"[red]{row['role']}[/]: {row['problem']}")
    out.print("[green]Every model folder checks out.[/]" if data["ok"]
              else "[red]Some model folders failed: see above for the fix.[/]")


# ------------------------------------------------------------------ --export-models
def export(args: argparse.Namespace) -> int:
    result = export_models(get_settings(), args.export_models, models_dir=_models_dir(args),
                           progress=_progress(args))
    emit(asdict(result), args.json, lambda d: out.print(
        f"Wrote {len(d['models'])} model folder{'' if len(d['models']) == 1 else 's'} "
        f"({', '.join(d['models'])}; {d['files']} files, "
        f"{human_size(d['bytes'])}) to {d['path']} in {d['seconds']:.1f}s; on the other machine run: "
        f"python -m askany.main --import-models {d['path']}", markup=False))
    return 0
