"""Answering: prompt, thinking split, context fitting, both LLM backends and the extractive fallback.

The local backend runs the real tiny random-weight Qwen3 through ModelRegistry,
so its output is gibberish: these tests check mechanics (streaming, splitting,
token budgets, fallbacks), never the content of generated answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from askany.core.config import Settings, load_settings
from askany.core.text import estimate_tokens
from askany.generation import (
    Answer,
    Answerer,
    GenerationOptions,
    Passage,
    ThinkingSplitter,
    citation_numbers,
    extractive_answer,
    split_thinking,
)
from askany.generation.backends.openai import OpenAIGenerator
from askany.generation.backends.transformers import TransformersGenerator, cut_at_stop
from askany.generation.fitting import fit_passages
from askany.generation.prompt import (
    LOW_CONFIDENCE_LABEL,
    NO_ANSWER,
    NOTHING_FOUND,
    build_messages,
    prompt_text,
)
from askany.models.registry import ModelRegistry
from tests.support.openai_standin import StandInServer, delta

QUESTION = "员工每年有几天带薪年假？"


@pytest.fixture(scope="module", autouse=True)
def no_env_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Settings come from defaults and overrides only, never from a developer's .env."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASKANY_ENV_FILE", str(tmp_path_factory.mktemp("env") / "missing.env"))
        yield


def make_passages() -> list[Passage]:
    return [
        Passage(1, "员工每年可以享受十五天带薪年假，工作满十年以后增加到二十天。请假需要提前三天在系统中提交申请。",
                "docs/员工手册.md", "员工手册", ["第三章 休假", "年假"]),
        Passage(2, "报销差旅费用时，需要提供发票、行程单和审批记录。单张发票的金额超过一万元需要部门经理签字。",
                "docs/财务制度.md", "财务制度", ["报销"]),
        Passage(3, "问：年假可以累积到下一年吗？答：未休完的年假可以顺延到次年第一季度。",
                "docs/faq.csv", "常见问题", [], low_confidence=True),
        Passage(4, "服务器的数据库每天凌晨两点自动备份，备份文件保存三十天。", "docs/运维.md", "", ["备份"]),
    ]


def settings_for(llm_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(llm_model=str(llm_dir), llm_max_new_tokens=24, llm_temperature=0.7)
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="module")
def tiny_registry(tiny_llm_dir: Path, no_env_file: None) -> ModelRegistry:
    return ModelRegistry(settings_for(tiny_llm_dir))


@pytest.fixture(scope="module")
def tiny_generator(tiny_registry: ModelRegistry) -> TransformersGenerator:
    return TransformersGenerator(tiny_registry.llm(), tiny_registry.settings)


class ScriptedGenerator:
    """A Generator that replays fixed pieces and records what it was asked."""

    def __init__(self, pieces: list[str], context_window: int = 32768):
        self.pieces = pieces
        self.context_window = context_window
        self.calls: list[tuple[list[dict[str, str]], bool]] = []

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def stream(self, messages: list[dict[str, str]], enable_thinking: bool) -> Iterator[str]:
        self.calls.append((messages, enable_thinking))
        yield from self.pieces


# --------------------------------------------------------------------------- prompt


def test_messages_hold_rules_numbered_passages_and_question() -> None:
    history = [{"role": "user", "content": "上一个问题"}, {"role": "assistant", "content": "上一个回答[1]"}]
    messages = build_messages(QUESTION, make_passages(), history=history)

    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    system, user = messages[0]["content"], messages[-1]["content"]
    assert "[n]" in system and "[1][2]" in system  # how to cite
    assert NO_ANSWER in system  # what to say when the passages do not answer
    assert "语言" in system  # answer in the question's language
    assert messages[1:3] == history
    assert "[1] 员工手册 > 第三章 休假 > 年假\n员工每年可以享受十五天带薪年假" in user
    assert "[4] 运维.md > 备份" in user  # no title: the file name stands in
    assert f"[3] {LOW_CONFIDENCE_LABEL}" in user
    assert user.count(LOW_CONFIDENCE_LABEL) == 1
    assert user.index("[1]") < user.index("[2]") < user.index("[3]") < user.index("[4]")
    assert user.rstrip().endswith(QUESTION)


def test_rendered_prompt_switches_thinking(tiny_generator: TransformersGenerator) -> None:
    messages = build_messages(QUESTION, make_passages()[:1])
    without = tiny_generator.render_prompt(messages, enable_thinking=False)
    with_thinking = tiny_generator.render_prompt(messages, enable_thinking=True)

    assert without.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "<think>" not in with_thinking
    assert with_thinking.endswith("<|im_start|>assistant\n")


# --------------------------------------------------------------------------- thinking


def test_split_thinking_whole_text() -> None:
    assert split_thinking("<think>\n先想一想。\n</think>\n\n答案是十五天[1]。") == ("先想一想。", "答案是十五天[1]。")
    assert split_thinking("答案是十五天[1]。") == ("", "答案是十五天[1]。")
    assert split_thinking("<think>\n\n</think>\n\n答案") == ("", "答案")
    assert split_thinking("<think>想到一半被截断") == ("想到一半被截断", "")
    assert split_thinking("答案里提到 <think> 也只是答案") == ("", "答案里提到 <think> 也只是答案")


@pytest.mark.parametrize("pieces", [
    ["<think>\n思考过程", "</th", "ink>\n\n答案[1]。"],
    ["<thi", "nk>思考", "过程<", "/think", ">", "答案", "[1]。"],
    list("<think>\n思考过程\n</think>\n\n答案[1]。"),  # one character at a time
])
def test_splitter_handles_tags_split_across_pieces(pieces: list[str]) -> None:
    splitter = ThinkingSplitter()
    events = [event for piece in pieces for event in splitter.feed(piece)] + splitter.finish()

    assert "".join(p for kind, p in events if kind == "thinking") == "思考过程"
    assert "".join(p for kind, p in events if kind == "answer") == "答案[1]。"
    assert not any("think>" in piece or piece.endswith("<") for _, piece in events)


def test_answer_stream_separates_thinking_from_a_stream() -> None:
    generator = ScriptedGenerator(["<think>", "\n用户问年假", "。</", "think", ">\n\n", "十五天", "[1]。"])
    answerer = Answerer(load_settings(), ModelRegistry(load_settings()), generator=generator)

    events = list(answerer.answer_stream(QUESTION, make_passages(), enable_thinking=True))
    kind, answer = events[-1]

    assert kind == "done" and isinstance(answer, Answer)
    assert answer.thinking == "用户问年假。"
    assert answer.text == "十五天[1]。"
    assert answer.citations == [1]
    assert "".join(str(p) for k, p in events if k == "thinking") == answer.thinking
    assert generator.calls[0][1] is True


# --------------------------------------------------------------------------- local generation


def test_tiny_qwen3_streams_tokens(tiny_registry: ModelRegistry) -> None:
    torch.manual_seed(0)
    pieces: list[tuple[str, str]] = []
    answerer = Answerer(tiny_registry.settings, tiny_registry)

    answer = answerer.answer(QUESTION, make_passages(), enable_thinking=False,
                             on_token=lambda kind, piece: pieces.append((kind, piece)))

    assert answer.kind == "generated"
    assert len(pieces) >= 2
    assert "".join(p for k, p in pieces if k == "answer") == answer.text
    assert "".join(p for k, p in pieces if k == "thinking") == answer.thinking
    assert answer.text and "<|im_end|>" not in answer.text
    assert set(answer.citations) <= {1, 2, 3, 4}
    assert 0 < answer.timings["first_token"] <= answer.timings["generate"]


def test_answerer_fits_prompt_into_context_window(tiny_llm_dir: Path, tiny_registry: ModelRegistry) -> None:
    settings = settings_for(tiny_llm_dir, llm_context_window=600, llm_max_new_tokens=16)
    generator = TransformersGenerator(tiny_registry.llm(), settings)
    seen: list[list[dict[str, str]]] = []
    original_stream = generator.stream

    def recording_stream(messages: list[dict[str, str]], enable_thinking: bool) -> Iterator[str]:
        seen.append(messages)
        return original_stream(messages, enable_thinking)

    generator.stream = recording_stream  # type: ignore[method-assign]
    long_passages = [Passage(i, "员工每年可以享受十五天带薪年假。" * 8, f"doc{i}.md", f"文件{i}", [])
                     for i in range(1, 6)]
    torch.manual_seed(1)
    answer = Answerer(settings, tiny_registry, generator=generator).answer(QUESTION, long_passages)

    assert answer.kind == "generated"
    prompt = generator.render_prompt(seen[0], enable_thinking=False)
    prompt_tokens = len(tiny_registry.llm().tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert prompt_tokens + settings.llm_max_new_tokens <= 600
    assert "[1]" in seen[0][-1]["content"] and "[5]" not in seen[0][-1]["content"]


def test_closing_the_stream_stops_generation(tiny_llm_dir: Path, tiny_registry: ModelRegistry) -> None:
    settings = settings_for(tiny_llm_dir, llm_max_new_tokens=5000)
    generator = TransformersGenerator(tiny_registry.llm(), settings)
    torch.manual_seed(2)
    started = time.perf_counter()
    stream = generator.stream(build_messages(QUESTION, make_passages()), enable_thinking=False)
    first = next(stream)
    stream.close()  # what a UI's stop button or a dropped connection does

    assert first
    assert time.perf_counter() - started < 10  # 5000 tokens would take far longer
    assert generator._lock.acquire(blocking=False)  # the next question can start
    generator._lock.release()


# --------------------------------------------------------------------------- context fitting


def test_fit_passages_drops_lowest_ranked_first(tiny_generator: TransformersGenerator) -> None:
    count = tiny_generator.count_tokens
    passages = make_passages()
    two = count(prompt_text(build_messages(QUESTION, passages[:2])))

    fitted = fit_passages(count, QUESTION, passages, two)

    assert fitted == passages[:2]
    assert fit_passages(count, QUESTION, passages, 100_000) == passages


def test_fit_passages_truncates_a_passage_too_long_alone(tiny_generator: TransformersGenerator) -> None:
    count = tiny_generator.count_tokens
    long_text = "员工每年可以享受十五天带薪年假，工作满十年以后增加到二十天。" * 40
    passages = [Passage(1, long_text, "a.md", "手册", []), *make_passages()[1:]]
    base = count(prompt_text(build_messages(QUESTION, [])))

    fitted = fit_passages(count, QUESTION, passages, base + 120)

    assert len(fitted) == 1 and fitted[0].number == 1
    assert long_text.startswith(fitted[0].text.removesuffix("……")) and len(fitted[0].text) < len(long_text)
    assert count(prompt_text(build_messages(QUESTION, fitted))) <= base + 120
    assert fit_passages(count, QUESTION, passages, base - 1) == []


def test_fit_passages_never_exceeds_budget(tiny_generator: TransformersGenerator) -> None:
    count = tiny_generator.count_tokens
    passages = make_passages() * 3
    base = count(prompt_text(build_messages(QUESTION, [])))
    for budget in range(base, base + 600, 37):
        fitted = fit_passages(count, QUESTION, passages, budget)
        assert count(prompt_text(build_messages(QUESTION, fitted))) <= budget


# --------------------------------------------------------------------------- OpenAI-compatible backend


def test_openai_backend_streams_reasoning_and_content(tiny_llm_dir: Path) -> None:
    server = StandInServer([delta(role="assistant"), delta(reasoning_content="用户问"),
                            delta(reasoning_content="年假。"), delta(content="十五天"), delta(content="[1]。")])
    try:
        settings = load_settings(llm_backend="openai", llm_api_base=server.base, llm_api_key="secret",
                                 llm_api_model="served-qwen3", llm_max_new_tokens=64)
        pieces: list[tuple[str, str]] = []
        answer = Answerer(settings, ModelRegistry(settings)).answer(
            QUESTION, make_passages(), enable_thinking=True, on_token=lambda k, p: pieces.append((k, p)))
    finally:
        server.close()

    assert (answer.kind, answer.thinking, answer.text, answer.citations) == (
        "generated", "用户问年假。", "十五天[1]。", [1])
    assert pieces[0] == ("thinking", "用户问")
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer secret"
    assert body["model"] == "served-qwen3" and body["stream"] is True and body["max_tokens"] == 64
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["messages"][0]["role"] == "system" and QUESTION in body["messages"][-1]["content"]


def test_openai_model_defaults_to_llm_model() -> None:
    settings = load_settings(llm_backend="openai", llm_model="Qwen/Qwen3-8B")
    body = OpenAIGenerator(settings).request_body([{"role": "user", "content": "hi"}], enable_thinking=False)
    assert body["model"] == "Qwen/Qwen3-8B"
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_openai_server_down_falls_back_quickly() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    settings = load_settings(llm_backend="openai", llm_api_base=base)

    started = time.perf_counter()
    answer = Answerer(settings, ModelRegistry(settings)).answer(QUESTION, make_passages())

    assert time.perf_counter() - started < 5
    assert answer.kind == "extracted"
    assert f"LLM_API_BASE={base}" in answer.notice
    assert "[1]" in answer.text and answer.citations[0] == 1


def test_openai_http_error_names_the_fix() -> None:
    server = StandInServer([], status=401)
    try:
        settings = load_settings(llm_backend="openai", llm_api_base=server.base)
        answer = Answerer(settings, ModelRegistry(settings)).answer(QUESTION, make_passages())
    finally:
        server.close()
    assert answer.kind == "extracted"
    assert "HTTP 401" in answer.notice and "LLM_API_KEY" in answer.notice


# --------------------------------------------------------------------------- fallbacks


def test_missing_llm_gives_extractive_answer(tmp_path: Path) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    settings = load_settings(llm_model=str(empty))

    answer = Answerer(settings, ModelRegistry(settings)).answer(QUESTION, make_passages())

    assert answer.kind == "extracted"
    assert str(empty) in answer.notice and "config.json" in answer.notice
    assert answer.text.startswith("员工每年可以享受十五天带薪年假") and answer.citations[0] == 1


def test_backend_none_never_loads_a_model(tmp_path: Path) -> None:
    settings = load_settings(llm_backend="none", llm_model=str(tmp_path / "absent"))
    registry = ModelRegistry(settings)

    events = list(Answerer(settings, registry).answer_stream(QUESTION, make_passages()))

    assert len(events) == 1 and events[0][0] == "done"
    answer = events[0][1]
    assert isinstance(answer, Answer) and answer.kind == "extracted"
    assert "LLM_BACKEND=none" in answer.notice
    assert registry.error("llm") is None  # never tried


def test_no_passages_means_no_llm_call() -> None:
    generator = ScriptedGenerator(["不应调用"])
    answer = Answerer(load_settings(), ModelRegistry(load_settings()), generator=generator).answer(QUESTION, [])
    assert (answer.kind, answer.text, answer.citations) == ("none", NOTHING_FOUND, [])
    assert generator.calls == []


def test_extractive_answer_picks_matching_sentences_with_citations() -> None:
    answer = extractive_answer("报销需要提供什么材料？", make_passages(), max_sentences=1)
    assert answer.text == "报销差旅费用时，需要提供发票、行程单和审批记录[2]。"
    assert (answer.kind, answer.citations, answer.notice) == ("extracted", [2], "")

    mixed = extractive_answer("what version was released", [
        Passage(7, "旧版本不再维护。Version 2.1.5 was released in 2024. It fixed 17 bugs.", "n.md", "Notes")])
    assert mixed.text == "Version 2.1.5 was released in 2024[7]."

    empty = extractive_answer(QUESTION, [])
    assert (empty.kind, empty.text) == ("none", NOTHING_FOUND)


# --------------------------------------------------------------------------- citations


@pytest.mark.parametrize(("text", "expected"), [
    ("年假十五天[1]。", [1]),
    ("见[2][1]，又见[2]。", [2, 1]),
    ("见 [1, 3] 和 [1,2]", [1, 3, 2]),
    ("中文括号【4】与[2，3]", [4, 2, 3]),
    ("不存在的[9]与年份[2024]不算", []),
    ("没有引用", []),
])
def test_citation_numbers(text: str, expected: list[int]) -> None:
    assert citation_numbers(text, [1, 2, 3, 4]) == expected


def test_estimate_tokens_counts_chinese_per_character() -> None:
    assert estimate_tokens("年假十五天") == 5
    assert estimate_tokens("abcdefgh") == 2
    assert estimate_tokens("") == 0


# --------------------------------------------------------------------------- generation options


def test_generation_options_reject_what_the_settings_would() -> None:
    for bad in (dict(max_tokens=0), dict(temperature=-0.1), dict(top_p=0.0), dict(top_p=1.5), dict(stop=[""])):
        with pytest.raises(ValueError):
            GenerationOptions(**bad)
    resolved = GenerationOptions(top_p=0.5).resolved(load_settings(llm_max_new_tokens=99, llm_temperature=0.3))
    assert (resolved.max_tokens, resolved.temperature, resolved.top_p, resolved.stop) == (99, 0.3, 0.5, [])


def test_openai_backend_sends_options_and_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-a-real-openai-key")  # must never reach a local server
    server = StandInServer([delta(content="十五天[1]。")])
    try:
        # LLM_MAX_NEW_TOKENS alone would leave no room for passages: the request's max_tokens decides.
        settings = load_settings(llm_backend="openai", llm_api_base=server.base, llm_context_window=2000,
                                 llm_max_new_tokens=4000)
        answerer = Answerer(settings, ModelRegistry(settings))
        assert answerer.answer(QUESTION, make_passages()).notice.code == "context_no_room"
        options = GenerationOptions(max_tokens=32, temperature=0.0, top_p=0.5, stop=["。"])
        answer = answerer.answer(QUESTION, make_passages(), options=options)
    finally:
        server.close()

    assert (answer.kind, answer.text) == ("generated", "十五天[1]。")
    _, headers, body = server.requests[0]
    assert "Authorization" not in headers
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["stop"]) == (32, 0.0, 0.5, ["。"])
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.parametrize(("status", "said", "fix"), [
    (404, "The model does not exist.", "LLM_API_MODEL names a served model"),
    (500, "engine crashed", "check the server's log"),
])
def test_openai_status_errors_name_the_fix(status: int, said: str, fix: str) -> None:
    server = StandInServer([], status=status, error_body=b'{"error": {"message": "%s"}}' % said.encode())
    try:
        settings = load_settings(llm_backend="openai", llm_api_base=server.base)
        answer = Answerer(settings, ModelRegistry(settings)).answer(QUESTION, make_passages())
    finally:
        server.close()
    assert answer.kind == "extracted"
    assert f"HTTP {status}" in answer.notice and fix in answer.notice and "\n" not in answer.notice
    assert said in answer.notice  # the server's own words, for the log


def test_openai_server_errors_are_retried_llm_api_retries_times_before_the_first_token() -> None:
    server = StandInServer([], status=503, error_body=b'{"error": {"message": "warming up"}}')
    try:
        settings = load_settings(llm_backend="openai", llm_api_base=server.base, llm_api_retries=2)
        answer = Answerer(settings, ModelRegistry(settings)).answer(QUESTION, make_passages())
        retried = len(server.requests)
        server.status = 401  # a refusal is not tried again
        Answerer(settings, ModelRegistry(settings)).answer(QUESTION, make_passages())
    finally:
        server.close()
    assert retried == 3 and answer.kind == "extracted" and "HTTP 503" in answer.notice
    assert len(server.requests) == retried + 1


def test_openai_error_event_mid_stream_cuts_the_answer() -> None:
    server = StandInServer([delta(content="十五天"), {"error": {"message": "engine died"}}])
    try:
        settings = load_settings(llm_backend="openai", llm_api_base=server.base)
        answer = Answerer(settings, ModelRegistry(settings)).answer(QUESTION, make_passages())
    finally:
        server.close()
    assert (answer.kind, answer.text) == ("generated", "十五天")
    assert answer.notice.code == "answer_cut" and "engine died" in answer.notice


def test_cut_at_stop_finds_stops_split_across_pieces() -> None:
    assert "".join(cut_at_stop(["答案", "是十", "五天。", "后面"], ["。"])) == "答案是十五天"
    assert list(cut_at_stop(["ab", "c<", "/s", "top>x"], ["</stop>"])) == ["ab", "c"]
    assert "".join(cut_at_stop(["a<", "b", "<s"], ["<s>"])) == "a<b<s"  # false starts are let through
    assert "".join(cut_at_stop(["xyz"], [])) == "xyz"


def test_local_backend_honours_options(tiny_generator: TransformersGenerator) -> None:
    greedy = GenerationOptions(max_tokens=12, temperature=0.0)
    config = tiny_generator.generation_config(greedy)
    assert (config.max_new_tokens, config.do_sample) == (12, False)
    sampled = tiny_generator.generation_config(GenerationOptions(temperature=0.9, top_p=0.6))
    assert (sampled.max_new_tokens, sampled.do_sample, sampled.temperature, sampled.top_p) == (24, True, 0.9, 0.6)

    messages = build_messages(QUESTION, make_passages()[:1])
    text = "".join(tiny_generator.stream(messages, False, greedy))
    assert text and tiny_generator.count_tokens(text) <= 12 + 2  # decoding may split a token's bytes
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = "".join(tiny_generator.stream(messages, False, GenerationOptions(max_tokens=12, temperature=0.0,
                                                                           stop=[stop])))
    assert cut == text[:text.find(stop)]  # greedy decoding repeats itself, so the cut is exact
    assert tiny_generator._lock.acquire(blocking=False)  # a stop ends generation and frees the model
    tiny_generator._lock.release()
