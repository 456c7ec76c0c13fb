"""The prompt: the system rules, numbered passages and the question as chat messages, plus the fixed answer texts.

Retrieval hands over the top-ranked passages, already numbered 1..k; the
number is the ``[n]`` the model cites and the user follows back to a source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

NO_ANSWER = "根据提供的资料无法回答该问题。"
NOTHING_FOUND = "知识库中没有找到与该问题相关的资料，无法回答。"
LOW_CONFIDENCE_LABEL = "（FAQ，匹配度较低）"
TRUNCATION_MARK = "……"

Message = dict[str, str]

SYSTEM_PROMPT = """你是一个严谨的问答助手，只能根据用户消息中提供的编号资料回答问题。
请遵守以下规则：
1. 只使用资料中的信息回答，不要使用资料以外的知识，也不要编造内容。
2. 在每条陈述之后紧跟它所依据的资料编号，格式为 [n]，例如：“员工每年有十五天年假[1]。”；依据多条资料时写成 [1][2]。
3. 如果资料中没有问题的答案，请直接说明：“{no_answer}”不要猜测。
4. 标有“{low}”的资料只是相似的常见问题，仅当它确实回答了用户的问题时才可使用。
5. 用提问所用的语言回答：中文问题用中文回答，英文问题用英文回答。
6. 回答简洁、直接，不要复述这些规则。""".format(no_answer=NO_ANSWER, low=LOW_CONFIDENCE_LABEL.strip("（）"))


@dataclass
class Passage:
    """One retrieved passage as the model sees it; `number` is the citation number [n]."""

    number: int
    text: str
    source: str
    title: str
    heading_path: list[str] = field(default_factory=list)
    low_confidence: bool = False


def passage_label(passage: Passage) -> str:
    """Title plus heading path, so the model (and a reader of the prompt) knows where a passage sits."""
    title = passage.title.strip() or (Path(passage.source).name if passage.source else "")
    parts = [title] if title else []
    parts += [h.strip() for h in passage.heading_path if h.strip() and h.strip() != title]
    return " > ".join(parts)


def format_passage(passage: Passage) -> str:
    """``[n] label`` on the first line, the passage text below it."""
    header = f"[{passage.number}]"
    if passage.low_confidence:
        header += f" {LOW_CONFIDENCE_LABEL}"
    label = passage_label(passage)
    if label:
        header += f" {label}"
    return f"{header}\n{passage.text.strip()}"


def build_messages(question: str, passages: Sequence[Passage], history: Sequence[Message] | None = None
                   ) -> list[Message]:
    """System rules, optional earlier turns, then one user message with the numbered passages and the question.

    The passages go into the final user message (not the system prompt) so that
    earlier turns of a chat keep their own context and only the latest
    retrieval is shown to the model.
    """
    if passages:
        material = "\n\n".join(format_passage(p) for p in passages)
    else:
        material = "（没有资料）"
    user = f"资料：\n{material}\n\n问题：{question.strip()}"
    messages: list[Message] = [{"role": "system", "content": SYSTEM_PROMPT}]
    messages += [{"role": str(turn["role"]), "content": str(turn["content"])} for turn in history or []]
    messages.append({"role": "user", "content": user})
    return messages


def prompt_text(messages: Sequence[Message]) -> str:
    """The message contents joined: what `fit_passages` counts (chat markup is covered by a margin)."""
    return "\n".join(m["content"] for m in messages)


def template_margin(message_count: int) -> int:
    """Tokens the chat template adds around the contents (role markers, generation prompt, think block)."""
    return 16 + 8 * message_count
