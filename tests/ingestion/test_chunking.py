"""Unit tests for askany.ingestion.chunking: pure text in, chunks out; no models."""

from __future__ import annotations

import re

import pytest

from askany.ingestion.chunking import Chunk, char_count_tokens, split_document

SENTENCES = [
    "系统需要 Linux 环境。",
    "内存至少 16 GB！",
    "你确定要继续吗？",
    "他说：“今天发布新版本。”",
    "升级到 v2.3.1 后出现 ERR-2041 错误；",
    "请检查 k8s 集群的配置。",
    "Restart the service and try again.",
    "「繁體的引號也要保留。」",
]


def body(chunk: Chunk) -> str:
    """Chunk text without the heading-path line."""
    return chunk.text.split("\n", 1)[1] if chunk.heading_path else chunk.text


def units_of(text: str) -> list[str]:
    """Fixture sentences found in ``text``, in text order."""
    return re.findall("|".join(re.escape(sentence) for sentence in SENTENCES), text)


def shared_sentences(previous: list[str], current: list[str]) -> int:
    """How many sentences ``current`` starts with that ``previous`` ended with."""
    for size in range(min(len(previous), len(current)), 0, -1):
        if previous[-size:] == current[:size]:
            return size
    return 0


# --------------------------------------------------------------------------- token estimate


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("   \n", 0), ("中文", 2), ("abcd", 1), ("abcde", 2), ("中文 abcd。", 4), ("　", 0), ("ＡＢ", 2)],
)
def test_char_count_tokens(text: str, tokens: int) -> None:
    assert char_count_tokens(text) == tokens


# --------------------------------------------------------------------------- sentences


def test_sentence_boundaries_respected() -> None:
    text = "".join(SENTENCES * 3)
    chunks = split_document(text, char_count_tokens, 30, 0)
    assert len(chunks) > 3
    sentence_or_space = "|".join(re.escape(s) for s in SENTENCES)
    for chunk in chunks:
        assert re.fullmatch(f"(?:(?:{sentence_or_space})\\s*)+", chunk.text), chunk.text
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_closing_quotes_stay_with_sentence() -> None:
    text = "他说：“今天发布。”然后离开了会场。她回答：「好的！」大家鼓掌。"
    chunks = split_document(text, char_count_tokens, 14, 0)
    assert [c.text for c in chunks] == ["他说：“今天发布。”", "然后离开了会场。", "她回答：「好的！」大家鼓掌。"]


def test_versions_codes_and_list_markers_are_not_sentence_ends() -> None:
    text = "升级到 v2.3.1 后出现 ERR-2041 错误。请检查 k8s 配置，例如 node.js 与 3.14 版本.\n1. 安装依赖。\n2. 配置文件。"
    pieces = [c.text for c in split_document(text, char_count_tokens, 15, 0)]
    assert pieces == [
        "升级到 v2.3.1 后出现 ERR-2041 错误。",
        "请检查 k8s 配置，例如 node.js 与 3.14 版本.",
        "1. 安装依赖。\n2. 配置文件。",
    ]


def test_ascii_punctuation_ends_sentences() -> None:
    text = "Is it ready? Yes! Run it; then stop. Done."
    chunks = split_document(text, char_count_tokens, 3, 0)
    assert [c.text for c in chunks] == ["Is it ready?", "Yes! Run it;", "then stop.", "Done."]


# --------------------------------------------------------------------------- sizes


def test_long_sentence_is_cut_and_nothing_is_lost() -> None:
    sentence = "这是一个没有任何标点符号的非常长的句子" * 20 + "。"
    chunks = split_document("短句。" + sentence + "结尾。", char_count_tokens, 50, 0)
    assert all(char_count_tokens(c.text) <= 50 for c in chunks)
    assert chunks[0].text.startswith("短句。")
    assert "".join(c.text for c in chunks) == "短句。" + sentence + "结尾。"


def test_long_sentence_prefers_clause_breaks() -> None:
    clauses = ["第一部分的内容比较长一些", "第二部分的内容也比较长", "第三部分的内容同样很长"]
    chunks = split_document("，".join(clauses) + "。", char_count_tokens, 14, 0)
    assert [c.text for c in chunks] == ["第一部分的内容比较长一些，", "第二部分的内容也比较长，", "第三部分的内容同样很长。"]


@pytest.mark.parametrize(("chunk_size", "chunk_overlap"), [(8, 0), (16, 4), (40, 10), (128, 32), (512, 64)])
def test_chunk_size_respected(chunk_size: int, chunk_overlap: int) -> None:
    text = mixed_document()
    chunks = split_document(text, char_count_tokens, chunk_size, chunk_overlap)
    assert chunks
    assert max(char_count_tokens(c.text) for c in chunks) <= chunk_size


@pytest.mark.parametrize("chunk_size", [5, 8, 20, 64])
def test_chunk_size_respected_with_special_tokens_and_non_additive_counter(chunk_size: int) -> None:
    """Like a real tokenizer: [CLS]/[SEP] on every call, and joined text can cost more than its parts."""

    def count(text: str) -> int:
        return len(text) // 3 + 2

    chunks = split_document(mixed_document(), count, chunk_size, chunk_size // 4)
    assert max(count(c.text) for c in chunks) <= chunk_size
    assert len(chunks) > 5


def test_hard_cut_does_not_split_ascii_words() -> None:
    sentence = "部署 k8s 集群时 ERR-2041 出现在 v2.3.1 版本中并且" * 12
    chunks = split_document(sentence, char_count_tokens, 14, 0)
    assert all(char_count_tokens(c.text) <= 14 for c in chunks)
    for word in ("k8s", "ERR-2041", "v2.3.1"):
        assert sum(c.text.count(word) for c in chunks) == 12, word


def test_hard_cut_keeps_spaces_between_pieces() -> None:
    words = " ".join(f"word{i}" for i in range(40))
    chunks = split_document(words, char_count_tokens, 6, 0)
    assert all(char_count_tokens(c.text) <= 6 for c in chunks)
    assert " ".join(c.text for c in chunks) == words


def test_each_sentence_counted_once() -> None:
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return char_count_tokens(text)

    text = "".join(SENTENCES * 50)
    chunks = split_document(text, count, 64, 16)
    sentences = len(SENTENCES) * 50
    # one call per sentence, one check per chunk, one for the empty string
    assert len(calls) <= sentences + len(chunks) + 1


# --------------------------------------------------------------------------- overlap


def test_overlap_repeats_trailing_whole_sentences() -> None:
    text = "".join(SENTENCES * 3)
    chunks = split_document(text, char_count_tokens, 30, 10)
    assert len(chunks) > 3
    overlapping = 0
    for previous, current in zip(chunks, chunks[1:], strict=False):
        previous_units, current_units = units_of(previous.text), units_of(current.text)
        shared = shared_sentences(previous_units, current_units)
        assert shared < len(current_units), "every chunk brings something new"
        assert sum(char_count_tokens(u) for u in current_units[:shared]) <= 10
        if char_count_tokens(previous_units[-1]) <= 10:
            assert shared >= 1, (previous.text, current.text)
            overlapping += 1
    assert overlapping >= 3


def test_zero_overlap_means_no_repetition() -> None:
    text = "".join(SENTENCES * 2)
    chunks = split_document(text, char_count_tokens, 30, 0)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


# --------------------------------------------------------------------------- headings


def test_heading_path_kept_and_prefixed() -> None:
    text = "# 安装指南\n\n引言。\n\n## 环境要求\n\n需要 Linux。\n\n### 内存\n\n16 GB。\n\n## 步骤\n\n运行命令。\n\n# 附录\n\n其他。"
    chunks = split_document(text, char_count_tokens, 100, 0)
    assert [(c.heading_path, c.text) for c in chunks] == [
        (("安装指南",), "安装指南\n引言。"),
        (("安装指南", "环境要求"), "安装指南 > 环境要求\n需要 Linux。"),
        (("安装指南", "环境要求", "内存"), "安装指南 > 环境要求 > 内存\n16 GB。"),
        (("安装指南", "步骤"), "安装指南 > 步骤\n运行命令。"),
        (("附录",), "附录\n其他。"),
    ]
    assert [c.position for c in chunks] == [0, 1, 2, 3, 4]


def test_no_chunk_spans_a_heading() -> None:
    first = "".join(f"第一节的第{i}句话。" for i in range(20))
    second = "".join(f"第二节的第{i}句话。" for i in range(20))
    chunks = split_document(f"## 甲\n{first}\n## 乙\n{second}", char_count_tokens, 40, 10)
    for chunk in chunks:
        assert not ("第一节" in chunk.text and "第二节" in chunk.text)
        expected = ("甲",) if "第一节" in chunk.text else ("乙",)
        assert chunk.heading_path == expected
        assert chunk.text.startswith(expected[0] + "\n")
        assert char_count_tokens(chunk.text) <= 40


def test_empty_sections_and_whitespace_produce_no_chunks() -> None:
    assert split_document("", char_count_tokens, 50, 0) == []
    assert split_document("  \n\n\t\n", char_count_tokens, 50, 0) == []
    chunks = split_document("# 空\n\n   \n# 有内容\n\n正文。\n\n## 也空\n", char_count_tokens, 50, 0)
    assert [(c.heading_path, c.text) for c in chunks] == [(("有内容",), "有内容\n正文。")]


def test_heading_syntax() -> None:
    text = "#hashtag 不是标题。\n\n## 结尾的井号 ##\n\n正文。\n\n####### 七个井号不是标题。\n\n    # 缩进四格也不是"
    chunks = split_document(text, char_count_tokens, 100, 0)
    assert chunks[0].heading_path == () and chunks[0].text == "#hashtag 不是标题。"
    assert chunks[1].heading_path == ("结尾的井号",)
    assert "####### 七个井号不是标题。" in chunks[1].text
    assert "# 缩进四格也不是" in chunks[1].text


def test_long_heading_path_is_shortened_to_fit() -> None:
    titles = [f"非常非常长的第{i}级标题" for i in range(1, 5)]
    text = "\n".join(f"{'#' * (i + 1)} {t}" for i, t in enumerate(titles)) + "\n正文内容。"
    chunks = split_document(text, char_count_tokens, 24, 0)
    assert chunks[0].heading_path == tuple(titles)
    assert chunks[0].text == f"{titles[-1]}\n正文内容。"


# --------------------------------------------------------------------------- code and mixed text


def test_fenced_code_kept_whole_and_not_parsed() -> None:
    code = "```python\n# 这不是标题\nx = cfg.get('a'). strip()\n\ny = 1. + 2\n```"
    text = f"# 示例\n\n下面是代码。\n\n{code}\n\n代码之后。"
    chunks = split_document(text, char_count_tokens, 200, 0)
    assert len(chunks) == 1
    assert chunks[0].heading_path == ("示例",)
    assert code in chunks[0].text


def test_oversized_code_block_split_by_lines() -> None:
    lines = [f"echo step-{i} && kubectl apply -f deploy-{i}.yaml" for i in range(30)]
    code = "```bash\n" + "\n".join(lines) + "\n```"
    chunks = split_document(code, char_count_tokens, 40, 0)
    assert len(chunks) > 1
    assert all(char_count_tokens(c.text) <= 40 for c in chunks)
    joined = "\n".join(c.text for c in chunks)
    assert all(line in joined for line in lines)


def test_mixed_chinese_english_code_tokens_stay_whole() -> None:
    text = mixed_document()
    for size in (10, 20, 60):
        chunks = split_document(text, char_count_tokens, size, 0)
        for word in ("k8s", "ERR-2041", "v2.3.1"):
            assert sum(c.text.count(word) for c in chunks) == text.count(word), (size, word)


def test_crlf_input() -> None:
    chunks = split_document("# 标题\r\n\r\n第一句。\r\n第二句。", char_count_tokens, 50, 0)
    assert [c.text for c in chunks] == ["标题\n第一句。\n第二句。"]


@pytest.mark.parametrize(("chunk_size", "chunk_overlap"), [(0, 0), (10, 10), (10, -1)])
def test_invalid_sizes(chunk_size: int, chunk_overlap: int) -> None:
    with pytest.raises(ValueError):
        split_document("文本。", char_count_tokens, chunk_size, chunk_overlap)


def mixed_document() -> str:
    paragraphs = [
        "# 运维手册",
        "本手册介绍 k8s 集群的部署。" + "".join(SENTENCES),
        "## 故障排查",
        "如果看到 ERR-2041，请先确认版本是 v2.3.1 或更高。" * 3,
        "```bash\nkubectl get pods -n prod\nkubectl logs deploy/api --tail=100\n```",
        "Mixed English text: the API gateway returns ERR-2041 when the upstream k8s service times out. "
        "Upgrade to v2.3.1; it retries automatically.",
        "没有标点的超长句子包含 k8s 和 ERR-2041 以及 v2.3.1 这些不能拆开的词" * 5,
        "## 附录",
        "- 列表项一\n- 列表项二，带有 v2.3.1\n- 列表项三",
    ]
    return "\n\n".join(paragraphs)
