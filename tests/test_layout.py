"""The package layout the architecture doc promises: front doors reach the library only through the
service layer, and no module grows past 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "askany"
FRONT_DOORS = ["cli", "web", "server", "main.py"]
# What a front door may import from askany: shared core pieces, the service layer, the model-management API.
ALLOWED = ("askany.core", "askany.service", "askany.models.manager", "askany.cli", "askany.web", "askany.server")
FORBIDDEN_EXAMPLES = ("askany.storage", "askany.models.registry", "askany.ingestion", "askany.retrieval")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every askany module a file imports, at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "askany" else [f"askany.{a.name}" for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name == "askany" or name.startswith("askany.")]


def front_door_files() -> list[Path]:
    files = []
    for door in FRONT_DOORS:
        target = PACKAGE / door
        files += [target] if target.is_file() else sorted(target.rglob("*.py")) if target.is_dir() else []
    return files


def test_front_doors_use_only_the_service_layer() -> None:
    files = front_door_files()
    assert any("cli" in f.parts for f in files) and any("web" in f.parts for f in files)
    wrong = [f"{path.relative_to(PACKAGE)}:{line} imports {name}" for path in files
             for line, name in imports_of(path) if not name.startswith(ALLOWED)]
    assert not wrong, "front doors must go through askany.service:\n" + "\n".join(wrong)


def test_the_check_itself_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "door.py"
    sample.write_text("def f():\n    from askany.storage.store import ChunkStore\n", encoding="utf-8")
    assert [name for _, name in imports_of(sample)] == ["askany.storage.store"]
    assert not "askany.storage.store".startswith(ALLOWED)
    assert all(not example.startswith(ALLOWED) for example in FORBIDDEN_EXAMPLES)


def test_no_module_is_over_600_lines() -> None:
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long


def test_tests_mirror_the_package_tree() -> None:
    tests = Path(__file__).resolve().parent
    folders = [d.name for d in tests.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))]
    stray = [name for name in folders if name != "support" and not (PACKAGE / name).is_dir()]
    assert "storage" in folders and not stray, f"test folders without a package of the same name: {stray}"
