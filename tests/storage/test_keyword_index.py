"""The segmented BM25 keyword index: exact scores, filters, deletes, merges, damage, crashes, concurrency."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import opencc
import pytest

from askany.ingestion.pipeline import Ingestor
from askany.retrieval.retriever import Retriever
from askany.storage.keyword_index import choose_merge
from askany.storage.store import SearchFilter

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT.parent / "shared" / "eval" / "cmrc2018-trial"
pytestmark = pytest.mark.usefixtures("empty_db")

TOY = {
    "ops/重启.md": "# 重启服务\n\n滚动重启 deployment 的步骤：先检查副本数，再执行 kubectl rollout restart。",
    "ops/日志.md": "# 日志清理\n\n磁盘空间不足时清理日志目录，保留最近七天的日志。日志目录在 /var/log。",
    "ops/告警.md": "# 告警处理\n\n收到 ERR-2041 告警时，先确认服务是否重启过，再查看日志。",
    "dev/发布.md": "# 发布流程\n\n版本 v2.3.1 的发布需要灰度，灰度通过后全量发布。发布前检查日志。",
    "dev/回滚.md": "# 回滚\n\n发布失败时回滚到上一个版本，回滚后重启服务并观察日志。",
}


def write_toy(root: Path) -> None:
    for name, text in TOY.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def reference_bm25(app, terms: list[str], search_filter: SearchFilter, k1: float, b: float) -> dict[int, float]:
    """Textbook BM25 over the chunks in the filter, from the chunks table: the index must agree."""
    where, params = search_filter.sql()
    with app.db.connection() as conn:
        rows = conn.execute(f"SELECT c.id, c.text FROM chunks c WHERE {where}", params).fetchall()
    bags = {chunk_id: Counter(app.analyzer.terms(text)) for chunk_id, text in rows}
    n = len(bags)
    avgdl = sum(sum(bag.values()) for bag in bags.values()) / n
    query = Counter(terms)
    scores: dict[int, float] = {}
    for term, qtf in query.items():
        df = sum(1 for bag in bags.values() if term in bag)
        if not df:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for chunk_id, bag in bags.items():
            tf = bag.get(term, 0)
            if tf:
                length = sum(bag.values())
                scores[chunk_id] = scores.get(chunk_id, 0.0) + qtf * idf * tf * (k1 + 1) / (
                    tf + k1 * (1 - b + b * length / avgdl))
    return scores


def assert_matches_reference(app, question: str, search_filter: SearchFilter) -> None:
    terms = app.analyzer.terms(question)
    expected = reference_bm25(app, terms, search_filter, app.settings.bm25_k1, app.settings.bm25_b)
    got = dict(app.store.keyword_search(terms, 10_000, search_filter))
    assert got.keys() == expected.keys(), (question, search_filter)
    for chunk_id, score in expected.items():
        assert got[chunk_id] == pytest.approx(score, rel=1e-9, abs=1e-9), (question, chunk_id)


@pytest.mark.parametrize("k1,b", [(1.2, 0.75), (0.9, 0.4)])
def test_bm25_scores_equal_a_reference_implementation_in_every_scope(make_app, tmp_path, k1, b) -> None:
    write_toy(tmp_path)
    app = make_app(bm25_k1=k1, bm25_b=b)
    Ingestor(app).run([tmp_path / "ops"], kb="ops", tags=["运维"], progress=False)
    Ingestor(app).run([tmp_path / "dev"], kb="dev", tags=["研发"], progress=False)
    Ingestor(app).run([ROOT / "ingest" / "samples"], kb="samples", progress=False)
    scopes = [SearchFilter(), SearchFilter(kbs=["ops"]), SearchFilter(kbs=["ops", "dev"]),
              SearchFilter(tags=["研发"]), SearchFilter(kbs=["samples"], faq=True), SearchFilter(faq=False)]
    for question in ["重启服务", "日志目录 磁盘空间", "灰度发布 v2.3.1", "ERR-2041 告警", "VPN 连不上", "日志 日志"]:
        for scope in scopes:
            assert_matches_reference(app, question, scope)

    # After a delete (a tombstone until the segment is merged) the scores still equal the reference.
    app.store.delete_document("ops", str((tmp_path / "ops" / "日志.md").resolve()))
    for scope in scopes:
        assert_matches_reference(app, "日志目录 磁盘空间", scope)


def test_a_filter_returns_the_best_matches_inside_it_not_a_filtered_top_n(make_app, tmp_path) -> None:
    many = tmp_path / "many"
    many.mkdir()
    for i in range(60):  # 60 strong matches in kb "big"
        (many / f"{i:02d}.md").write_text(f"# 文档 {i}\n\n数据库备份数据库备份数据库备份。", encoding="utf-8")
    weak = tmp_path / "weak"
    weak.mkdir()
    (weak / "one.md").write_text("# 其他\n\n这里只提了一次备份。", encoding="utf-8")
    app = make_app()
    Ingestor(app).run([many], kb="big", progress=False)
    Ingestor(app).run([weak], kb="small", tags=["少"], progress=False)
    terms = app.analyzer.terms("数据库备份")
    for scope in (SearchFilter(kbs=["small"]), SearchFilter(tags=["少"])):
        ranked = app.store.keyword_search(terms, 5, scope)
        assert len(ranked) == 1, scope  # found although 60 better chunks elsewhere rank above it
        assert Path(app.store.fetch_chunks([ranked[0][0]])[ranked[0][0]].source).name == "one.md"


def test_delete_and_replace_are_seen_by_the_next_query_of_another_process_view(make_app, tmp_path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# 甲\n\n熊猫住在竹林里。", encoding="utf-8")
    writer, reader = make_app(), make_app()  # separate stores: separate caches, like two processes
    Ingestor(writer).run([docs], kb="live", progress=False)
    terms = reader.analyzer.terms("熊猫")
    assert reader.store.keyword_search(terms, 5) and reader.store.keyword_search(terms, 5)  # cached now

    (docs / "a.md").write_text("# 甲\n\n企鹅住在南极。", encoding="utf-8")
    Ingestor(writer).run([docs], kb="live", progress=False)
    assert reader.store.keyword_search(terms, 5) == []
    assert reader.store.keyword_search(reader.analyzer.terms("企鹅"), 5)

    writer.store.delete_document("live", str((docs / "a.md").resolve()))
    assert reader.store.keyword_search(reader.analyzer.terms("企鹅"), 5) == []


def test_results_do_not_depend_on_how_segments_are_merged(make_app, tmp_path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    app = make_app()
    for i, (name, text) in enumerate(TOY.items()):  # one run per file: one segment each
        path = docs / f"{i}-{Path(name).name}"
        path.write_text(text, encoding="utf-8")
        Ingestor(app).run([path], kb="layout", progress=False)
    questions = ["重启服务", "日志", "灰度发布 回滚", "ERR-2041"]
    before = {q: app.store.keyword_search(app.analyzer.terms(q), 10) for q in questions}
    with app.db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM keyword_segments").fetchone()[0] >= 2
    app.store.repair_keyword_index("test: one segment")  # the same chunks, re-derived into one segment
    with app.db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM keyword_segments").fetchone()[0] == 1
    after = {q: app.store.keyword_search(app.analyzer.terms(q), 10) for q in questions}
    assert after == before


def test_merge_policy_merges_size_classes_and_expunges_deletions() -> None:
    assert choose_merge([(i, 2048, 0) for i in range(3)]) == []
    assert choose_merge([(i, 2048, 0) for i in range(4)]) == [0, 1, 2, 3]
    assert choose_merge([(i, 20000, 0) for i in range(4)]) == [0, 1, 2]  # as many as fit in MERGE_MAX_DOCS
    assert choose_merge([(1, 40000, 0), (2, 40000, 0)]) == []  # full enough
    assert choose_merge([(1, 40000, 0), (2, 1000, 400)]) == [2]  # many deletions: rewritten


def test_merges_drop_deleted_chunks_and_keep_the_index_exact(make_app, tmp_path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    app = make_app()
    for i in range(9):
        path = docs / f"{i}.md"
        path.write_text(f"# 第{i}篇\n\n共同的内容：服务重启。独有的词：编号{i}号。", encoding="utf-8")
        Ingestor(app).run([path], kb="merge", progress=False)
    for i in range(0, 9, 2):
        app.store.delete_document("merge", str((docs / f"{i}.md").resolve()))
    app.store.keywords.maybe_merge(range(1, 100))
    with app.db.connection() as conn:
        segments = conn.execute("SELECT count(*) FROM keyword_segments").fetchone()[0]
        tombstones = conn.execute("SELECT count(*) FROM keyword_deleted").fetchone()[0]
    assert segments < 9 and tombstones < 5
    assert app.store.keywords.needs_rebuild() == ""
    assert_matches_reference(app, "服务重启 编号3号", SearchFilter(kbs=["merge"]))


def test_damaged_or_missing_index_is_rebuilt_with_a_notice(make_app, tmp_path) -> None:
    write_toy(tmp_path)
    app = make_app()
    Ingestor(app).run([tmp_path / "ops"], kb="ops", progress=False)
    expected = app.store.keyword_search(app.analyzer.terms("日志目录"), 5)
    with app.db.connection() as conn:  # damage every postings row
        conn.execute("UPDATE keyword_postings SET postings = '\\x0102'::bytea")
    fresh = make_app()
    result = Retriever(fresh).retrieve("日志目录", mode="keyword", rerank=False)
    assert any("keyword index was rebuilt" in notice for notice in result.notices), result.notices
    assert [(hit.chunk.id, round(hit.score, 6)) for hit in result.hits][:len(expected)] == [
        (chunk_id, round(score, 6)) for chunk_id, score in expected]

    with app.db.connection() as conn:  # the index tables emptied
        conn.execute("DELETE FROM keyword_postings")
        conn.execute("DELETE FROM keyword_segments")
    again = make_app()
    result = Retriever(again).retrieve("日志目录", mode="keyword", rerank=False)
    assert any("holds 0 chunks" in notice for notice in result.notices), result.notices
    assert result.hits


def test_traditional_and_simplified_find_each_other(make_app, tmp_path) -> None:
    to_traditional = opencc.OpenCC("s2t")
    (tmp_path / "trad.md").write_text(to_traditional.convert("# 网络故障\n\n网络连接中断时，检查路由器和交换机的电源。"),
                                      encoding="utf-8")
    (tmp_path / "simp.md").write_text("# 软件发布\n\n发布软件前需要经过测试和审核。", encoding="utf-8")
    app = make_app()
    Ingestor(app).run([tmp_path], kb="script", progress=False)

    def top(question: str) -> str:
        ranked = app.store.keyword_search(app.analyzer.terms(question), 1)
        return Path(app.store.fetch_chunks([ranked[0][0]])[ranked[0][0]].source).name

    assert top("网络连接中断怎么办") == "trad.md"  # Simplified question, Traditional document
    assert top(to_traditional.convert("发布软件前需要什么")) == "simp.md"  # and the reverse


def test_fast_nfkc_equals_unicodedata_on_every_code_point() -> None:
    """The analyzer's NFKC shortcut (fullwidth ASCII mapped first) gives exactly NFKC's text, also
    where a mapped character composes with what follows (Ａ + combining acute is Á)."""
    import unicodedata

    from askany.ingestion.keywords import _nfkc

    every = "".join(chr(code) for code in range(0x20, 0x30000) if not 0xD800 <= code < 0xE000)
    for start in range(0, len(every), 499):
        text = every[start:start + 600] + "Ａ\u0301ｶﾞ、，。\u3000（ｘ）" + every[start:start + 7]
        assert _nfkc(text) == unicodedata.normalize("NFKC", text)
    assert _nfkc("网络，中断（ＡＢＣ）") == "网络,中断(ABC)"


def test_keyword_channel_on_traditional_documents_keeps_its_quality(run_cli, tmp_path) -> None:
    """shared/eval with its documents converted to Traditional Chinese, questions left Simplified."""
    convert = opencc.OpenCC("s2t")
    docs = tmp_path / "trad-docs"
    docs.mkdir()
    for path in (EVAL / "docs").glob("*.md"):
        (docs / path.name).write_text(convert.convert(path.read_text(encoding="utf-8")), encoding="utf-8")
    import json

    status, out, _ = run_cli("--eval", str(EVAL / "queries.jsonl"), "--docs", str(docs), "--json", "--no-progress",
                             EMBEDDING_ENABLED="false")
    assert status == 0
    keyword = next(row for row in json.loads(out)["setups"] if row["setup"] == "keyword")
    assert keyword["hit1"] >= 0.97 and keyword["mrr"] >= 0.98, keyword


KILL_IN_MERGE = """
import os, signal, sys
from askany.storage import keyword_index
merge, insert = keyword_index.KeywordIndex._merge, keyword_index.KeywordIndex._insert
state = {"merging": False}
def in_merge(self, *args):
    state["merging"] = True
    return merge(self, *args)
def killing_insert(conn, part, built):
    segment = insert(conn, part, built)
    if state["merging"]:  # the merged segment is written, the old ones not yet deleted: die uncommitted
        os.kill(os.getpid(), signal.SIGKILL)
    return segment
keyword_index.KeywordIndex._merge = in_merge
keyword_index.KeywordIndex._insert = staticmethod(killing_insert)
from askany.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_inside_a_merge_then_rerun_gives_the_uninterrupted_state(make_app, pg_data_dir, tiny_embedding_dir,
                                                                        tmp_path) -> None:
    from tests.ingestion.test_pipeline import CMRC_DOCS
    from tests.support.snapshots import snapshot

    app = make_app(embedding_model=str(tiny_embedding_dir))
    Ingestor(app).run([CMRC_DOCS], kb="reference", progress=False)
    expected = snapshot(app, "reference")
    env = {**os.environ, "DATA_DIR": str(pg_data_dir), "EMBEDDING_MODEL": str(tiny_embedding_dir),
           "INGEST_GROUP_CHUNKS": "16", "LLM_BACKEND": "none", "MODELS_DIR": str(tmp_path / "models")}
    args = ["--ingest", str(CMRC_DOCS), "--kb", "killed", "--no-progress"]
    killed = subprocess.run([sys.executable, "-c", KILL_IN_MERGE, *args], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = snapshot(app, "killed")
    assert 0 < len(partial["documents"]) < 256
    assert app.store.keywords.needs_rebuild() == ""  # the killed merge left the old segments intact

    resumed = subprocess.run([sys.executable, "-m", "askany.main", *args], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = snapshot(app, "killed")
    assert final["documents"] == expected["documents"] and final["terms"] == expected["terms"]
    assert final["vectors"] == expected["vectors"]


@pytest.mark.slow
def test_two_processes_ingesting_while_a_third_queries(make_app, pg_data_dir, tmp_path) -> None:
    """The CLI in two processes writes two knowledge bases while this process (as the page does) asks."""
    left, right = tmp_path / "left", tmp_path / "right"
    for folder, words in ((left, "左边"), (right, "右边")):
        folder.mkdir()
        for i in range(150):
            (folder / f"{i:03d}.md").write_text(f"# {words}{i}\n\n这是{words}的第{i}篇文档，讲服务重启和日志。"
                                                f"编号 ID-{i:04d}。", encoding="utf-8")
    env = {**os.environ, "DATA_DIR": str(pg_data_dir), "EMBEDDING_ENABLED": "false", "LLM_BACKEND": "none",
           "INGEST_WORKERS": "1", "MODELS_DIR": str(tmp_path / "models")}
    runs = [subprocess.Popen([sys.executable, "-m", "askany.main", "--ingest", str(folder), "--kb", kb,
                              "--no-progress"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for folder, kb in ((left, "left"), (right, "right"))]
    app = make_app()
    retriever = Retriever(app)
    seen = set()
    while any(run.poll() is None for run in runs):
        try:
            hits = retriever.retrieve("服务重启", mode="keyword", rerank=False, top_k=50).hits
        except Exception as error:  # noqa: BLE001 - "empty knowledge base" is fine before the first commit
            assert "empty" in str(error).lower() or "no words" in str(error).lower(), error
            hits = []
        seen.add(len(hits))
        time.sleep(0.05)
    for run in runs:
        out, err = run.communicate()
        assert run.returncode == 0, err
    assert app.store.keywords.needs_rebuild() == ""
    for kb, word in (("left", "左边"), ("right", "右边")):
        ranked = app.store.keyword_search(app.analyzer.terms(f"{word}的第7篇文档 ID-0007"), 3, SearchFilter(kbs=[kb]))
        assert Path(app.store.fetch_chunks([ranked[0][0]])[ranked[0][0]].source).name == "007.md"
        assert_matches_reference(app, f"{word} 日志", SearchFilter(kbs=[kb]))


def test_load_kernels_loads_what_building_and_merging_segments_call() -> None:
    # A new process: in this one earlier tests may have called the kernels already.
    code = ("from askany.storage.keyword_segment import load_kernels; load_kernels(); "
            "from askany.storage import keyword_kernels as k; "
            "print(all(f.signatures for f in (k.intern, k.group_order, k.gather_names, k.decode_rows)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True"
