"""The `.env` lines that make AskAny load downloaded or imported model folders offline (`--write-env`)."""

from __future__ import annotations

from pathlib import Path

from askany.config import Settings
from askany.model_files import DownloadResult, atomic_write

ENV_KEYS = {
    "embedding": ("EMBEDDING_MODEL", "EMBEDDING_LOCAL_FILES_ONLY"),
    "reranker": ("RERANKER_MODEL", "RERANKER_LOCAL_FILES_ONLY"),
    "llm": ("LLM_MODEL", "LLM_LOCAL_FILES_ONLY"),
    "hanlp": ("HANLP_TOK_MODEL", None),
}


def env_lines(settings: Settings, results: list[DownloadResult]) -> list[str]:
    """The `.env` lines that make AskAny load these folders with no network access."""
    lines: list[str] = []
    for result in results:
        if not result.ok or not result.path or result.role not in ENV_KEYS:
            continue
        model_key, offline_key = ENV_KEYS[result.role]
        lines.append(f"{model_key}={_env_value(result.path)}")
        if offline_key:
            lines.append(f"{offline_key}=true")
    parents = {str(Path(r.path).parent) for r in results if r.ok and r.path}
    if len(parents) == 1 and Path(next(iter(parents))) != settings.models_dir.resolve():
        lines.append(f"MODELS_DIR={_env_value(next(iter(parents)))}")
    if lines:
        lines.append("HF_HUB_OFFLINE=1")
    return lines


def write_env(lines: list[str], env_path: Path | str) -> Path:
    """Set these keys in `env_path`, keeping every other line and comment (created when missing)."""
    env_path = Path(env_path)
    updates = dict(line.split("=", 1) for line in lines)
    old = env_path.read_text(encoding="utf-8").splitlines() if env_path.is_file() else []
    new: list[str] = []
    written: set[str] = set()
    for line in old:
        key = _env_key(line)
        if key in updates:
            if key not in written:
                new.append(f"{key}={updates[key]}")
                written.add(key)
            continue
        new.append(line)
    added = [key for key in updates if key not in written]
    if added:
        if new and new[-1].strip():
            new.append("")
        new.append("# Local model folders written by python -m askany.main --download-models (offline use)")
        new.extend(f"{key}={updates[key]}" for key in added)
    atomic_write(env_path, "\n".join(new) + "\n")
    return env_path


def _env_key(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" not in stripped:
        return None
    return stripped.removeprefix("export ").split("=", 1)[0].strip()


def _env_value(value: str) -> str:
    if any(c in value for c in " \t#'\"\\$"):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value
