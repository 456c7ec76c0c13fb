"""Feedback on answers: stored with what produced them, hostile comments refused in one sentence,
several writers at once, and exported as a question set that --eval reads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from askany.service import Service, read_queries
from askany.service.feedback import MAX_COMMENT_CHARS, FeedbackError

SOURCES = [{"number": 1, "source": "/docs/员工手册.md", "kb": "hr", "cited": True, "chunk_id": 1},
           {"number": 2, "source": "/docs/安全须知.md", "kb": "hr", "cited": False, "chunk_id": 2}]


@pytest.mark.usefixtures("empty_db")
def test_feedback_is_stored_with_its_settings_and_exported_for_eval(make_app, tmp_path: Path) -> None:
    service = Service(app=make_app())
    up = service.record_feedback("up", "员工每年有几天年假？", "十五天[1]。", SOURCES, {"query_type": "DOCS", "top_k": 3})
    down = service.record_feedback(False, "门禁卡丢了怎么办？", "不知道。", SOURCES[1:], {"query_type": "AUTO"})
    service.update_feedback(down, comment="应该引用《安全须知》，挂失电话是 8001")
    service.record_feedback("down", "没有来源的问题", "无。", [], {})
    rows = service.feedback.list()
    assert [r.rating for r in rows] == [1, -1, -1]
    assert rows[0].settings["top_k"] == 3 and rows[0].settings["llm_backend"] == "none"
    assert rows[0].sources[0]["source"] == "/docs/员工手册.md" and rows[1].comment.startswith("应该引用")

    path = tmp_path / "feedback.jsonl"
    assert service.export_feedback(path) == (2, 1)  # the answer without a source cannot be scored
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(line["id"], line["doc_id"], line["rating"]) for line in lines] == [
        (f"feedback-{up}", "员工手册", "up"), (f"feedback-{down}", "安全须知", "down")]
    queries = read_queries(path)
    assert [q.question for q in queries] == ["员工每年有几天年假？", "门禁卡丢了怎么办？"]
    assert service.export_feedback(path, "down") == (1, 1)
    assert [q.doc_id for q in read_queries(path)] == ["安全须知"]


@pytest.mark.usefixtures("empty_db")
@pytest.mark.parametrize(("comment", "says"), [
    ("长" * (MAX_COMMENT_CHARS + 1), "characters long"),
    ("坏\x00字", "NUL"),
    ("坏\ud800字", "surrogates"),
    ("响铃\x07", "control characters"),
])
def test_hostile_comments_get_one_clear_sentence(make_app, comment: str, says: str) -> None:
    service = Service(app=make_app())
    feedback_id = service.record_feedback("up", "问题", "答案", SOURCES, {})
    with pytest.raises(FeedbackError, match=says):
        service.update_feedback(feedback_id, comment=comment)
    with pytest.raises(FeedbackError, match="Unknown rating"):
        service.record_feedback("meh", "问题", "答案", SOURCES, {})
    with pytest.raises(FeedbackError, match="no feedback"):
        service.update_feedback(feedback_id + 1000, comment="好")
    # Odd but valid text is kept as it is; a NUL inside a model's answer is dropped, not refused.
    service.update_feedback(feedback_id, comment="  ＡＢＣ 👍🏽 \u202eabc 换行\n第二行 ")
    other = service.record_feedback("down", "问\x00题", "答\ud800案", SOURCES, {})
    rows = {r.id: r for r in service.feedback.list()}
    assert rows[feedback_id].comment == "ＡＢＣ 👍🏽 \u202eabc 换行\n第二行"
    assert rows[other].question == "问题" and rows[other].answer == "答?案"


@pytest.mark.usefixtures("empty_db")
def test_writers_at_once_lose_nothing(make_app) -> None:
    services = [Service(app=make_app()) for _ in range(3)]
    ids: list[int] = []

    def write(service: Service) -> None:
        for n in range(15):
            ids.append(service.record_feedback("up" if n % 2 else "down", f"问题{n}", "答案", SOURCES, {}))

    threads = [threading.Thread(target=write, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(set(ids)) == 45 and len(services[0].feedback.list()) == 45


@pytest.mark.usefixtures("empty_db")
def test_cli_exports_feedback_and_evaluates_it(make_app, run_cli, tmp_path: Path) -> None:
    from askany.ingestion.pipeline import Ingestor

    app = make_app()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "员工手册.md").write_text("# 员工手册\n\n员工每年可以享受十五天带薪年假。\n", encoding="utf-8")
    Ingestor(app).run([docs], kb="hr", progress=False)
    Service(app=app).record_feedback("down", "员工每年有几天带薪年假？", "不知道。",
                                     [{"source": str(docs / "员工手册.md"), "cited": True}], {"kbs": ["hr"]})
    path = tmp_path / "feedback.jsonl"
    status, out, err = run_cli("--export-feedback", str(path), "--rating", "down")
    assert status == 0 and "Wrote 1 questions" in out, err
    status, out, err = run_cli("--eval", str(path), "--kb", "hr", "--json")
    assert status == 0, err
    keyword = next(row for row in json.loads(out)["setups"] if row["setup"] == "keyword")
    assert keyword["questions"] == 1 and keyword["hit1"] == 1.0
    status, _, err = run_cli("--export-feedback", str(tmp_path / "missing" / "f.jsonl"))
    assert status == 2 and "does not exist" in err
