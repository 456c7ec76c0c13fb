"""The `.env` lines that make AskAny load downloaded or imported model folders offline (`--write-env`)."""

from __future__ import annotations

import io
from pathlib import Path

from dotenv import dotenv_values, set_key

from askany.core.config import Settings
from askany.models.files import DownloadResult, atomic_write
from askany.models.roles import role_named

COMMENT = "# Local model folders written by python -m askany.main --download-models (offline use)"


def env_lines(settings: Settings, results: list[DownloadResult]) -> list[str]:
    """The `.env` lines that make AskAny load these folders with no network access."""
    lines: list[str] = []
    for result in results:
        role = role_named(result.role)
        if not result.ok or not result.path or role is None:
            continue
        lines.append(f"{role.setting}={_env_value(result.path)}")
        if role.local_only_setting:
            lines.append(f"{role.local_only_setting}=true")
    parents = {str(Path(r.path).parent) for r in results if r.ok and r.path}
    if len(parents) == 1 and Path(next(iter(parents))) != settings.models_dir.resolve():
        lines.append(f"MODELS_DIR={_env_value(next(iter(parents)))}")
    if lines:
        lines.append("HF_HUB_OFFLINE=1")
    return lines


def write_env(lines: list[str], env_path: Path | str) -> Path:
    """Set these keys in `env_path` with python-dotenv, keeping every other line and comment.

    The file is created when missing; keys it lacks are added at its end under one comment
    saying where they came from.
    """
    env_path = Path(env_path)
    updates = dotenv_values(stream=io.StringIO("\n".join(lines)), interpolate=False)
    present = set(dotenv_values(env_path, interpolate=False)) if env_path.is_file() else set()
    if any(key not in present for key in updates):
        _append_comment(env_path)
    for key, value in updates.items():
        # Plain values stay unquoted (as a person writes them); others are single-quoted, where
        # dotenv expands nothing.
        set_key(env_path, key, value or "", quote_mode="always" if _needs_quotes(value or "") else "never")
    return env_path


def _append_comment(env_path: Path) -> None:
    text = env_path.read_text(encoding="utf-8") if env_path.is_file() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    if text.strip() and text.splitlines()[-1].strip():
        text += "\n"  # a blank line between the user's settings and ours
    atomic_write(env_path, text + COMMENT + "\n")


def _needs_quotes(value: str) -> bool:
    return any(c in value for c in " \t#'\"\\$")


def _env_value(value: str) -> str:
    """How a value is shown in a printed `.env` line: double-quoted when a plain one would be misread."""
    if _needs_quotes(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value
