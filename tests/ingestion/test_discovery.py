"""Which files an ingestion takes: links, special files and loops, each skipped one with its reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from askany.ingestion.discovery import discover
from askany.ingestion.pipeline import Ingestor


def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "docs", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (outside / "more").mkdir(parents=True)
    (root / "a.md").write_text("# 甲\n\n正常文件。", encoding="utf-8")
    (root / "sub" / "b.md").write_text("# 乙\n\n子目录里的文件。", encoding="utf-8")
    (root / ".hidden.md").write_text("隐藏", encoding="utf-8")
    (outside / "secret.md").write_text("# 机密\n\n不在收录目录里的内容。", encoding="utf-8")
    (outside / "more" / "c.md").write_text("# 丙\n\n外部目录。", encoding="utf-8")
    (root / "out.md").symlink_to(outside / "secret.md")
    (root / "out-dir").symlink_to(outside / "more")
    (outside / "more" / "back").symlink_to(root)  # followed out, then back in: must not loop
    (root / "again.md").symlink_to(root / "a.md")
    (root / "sub-again").symlink_to(root / "sub")
    (root / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    (root / "loop1.md").symlink_to(root / "loop2.md")
    (root / "loop2.md").symlink_to(root / "loop1.md")
    os.mkfifo(root / "pipe.md")
    return root, outside


def reasons(found) -> dict[str, str]:  # noqa: ANN001
    return {path.name: reason for path, reason in found.skipped}


def test_links_out_of_the_roots_are_skipped_by_default(tmp_path: Path) -> None:
    root, _ = tree(tmp_path)
    found = discover([root])
    assert found.files == [root / "a.md", root / "sub" / "b.md"]
    why = reasons(found)
    assert "FOLLOW_SYMLINKS" in why["out.md"] and "FOLLOW_SYMLINKS" in why["out-dir"]
    assert "its own path" in why["again.md"] and "its own path" in why["sub-again"]
    assert "broken link" in why["dangling.md"]
    assert why["loop1.md"] == why["loop2.md"] == "a link loop"
    assert why["pipe.md"] == "not a regular file (a FIFO)"


def test_followed_links_keep_the_path_they_were_found_at(tmp_path: Path) -> None:
    root, outside = tree(tmp_path)
    found = discover([root], follow_symlinks=True)
    assert found.files == [root / "a.md", root / "out-dir" / "c.md", root / "out.md", root / "sub" / "b.md"]
    assert "its own path" in reasons(found)["back"]  # the way back into the roots is not walked twice
    assert not any(path.is_relative_to(outside) for path in found.files)


def test_a_named_file_and_a_missing_path(tmp_path: Path) -> None:
    root, _ = tree(tmp_path)
    found = discover([root / "out.md", tmp_path / "gone"])
    assert found.files == [root / "out.md"]  # named on the command line: the user chose it
    assert found.missing == [tmp_path / "gone"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_an_unreadable_folder_is_listed(tmp_path: Path) -> None:
    root, _ = tree(tmp_path)
    locked = root / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        assert "unreadable folder" in reasons(discover([root]))["locked"]
    finally:
        locked.chmod(0o755)


@pytest.mark.usefixtures("empty_db")
def test_sync_removes_a_followed_link_once_it_is_gone(make_app, tmp_path: Path) -> None:
    root, outside = tree(tmp_path)
    report = Ingestor(make_app()).run([root], kb="links", progress=False)
    skipped = {Path(r.path).name: r.reason for r in report.results if r.status == "skipped"}
    assert "FOLLOW_SYMLINKS" in skipped["out.md"] and skipped["pipe.md"] == "not a regular file (a FIFO)"
    assert {Path(r.path).name for r in report.results if r.status == "new"} == {"a.md", "b.md"}

    app = make_app(follow_symlinks=True)
    Ingestor(app).run([root], kb="links", progress=False)
    sources = {d["source"] for d in app.store.list_documents("links")}
    assert str(root / "out.md") in sources and str(outside / "secret.md") not in sources
    (root / "out.md").unlink()
    report = Ingestor(app).run([root], kb="links", sync=True, progress=False)
    assert [r.path for r in report.results if r.status == "removed"] == [str(root / "out.md")]
    assert str(root / "out.md") not in {d["source"] for d in app.store.list_documents("links")}
