"""Conversation rules every front door shares: what a follow-up is, what it is searched with, and
which earlier turns the model sees.

Nothing here is about HTML or Gradio: the chat page keeps its turns in session state, an HTTP
server would rebuild them from the client's messages, and both answer the same follow-up the
same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from askany.core.text import CITATION

HISTORY_TURNS = 3  # earlier turns passed to the model
HISTORY_CHARS = 1500  # their total size, so they never crowd the passages out of the context window
HISTORY_ANSWER_CHARS = 500
SHORT_FOLLOW_UP_CHARS = 12
FOLLOW_UP_PREFIXES = ("那", "这", "它", "还有", "然后", "另外", "此外", "其", "该", "上述",
                      "and ", "what about", "how about", "then ")


@dataclass
class Turn:
    """One question and its answer, as the session remembers them."""

    question: str
    topic: str  # the standalone question this turn is about (its own, or an earlier one's for a follow-up)
    answer: str


def is_follow_up(question: str) -> bool:
    """A question too short or too referring ("那第二步呢？") to be searched on its own."""
    text = question.strip()
    core = re.sub(r"[\W_]+", "", text)
    return len(core) < SHORT_FOLLOW_UP_CHARS or text.lower().startswith(FOLLOW_UP_PREFIXES)


def retrieval_query(question: str, turns: Sequence[Turn]) -> tuple[str, str]:
    """(text to search with, topic of this turn): a follow-up is searched together with its topic.

    The topic is the last standalone question, so a chain of follow-ups
    ("第二步呢？", "第三步呢？") keeps pointing at the original question instead
    of growing longer each turn.
    """
    question = question.strip()
    if turns and is_follow_up(question):
        topic = turns[-1].topic
        return f"{topic} {question}", topic
    return question, question


def strip_citations(text: str) -> str:
    """Text without [n] markers: earlier answers' numbers refer to passages the model no longer sees."""
    return re.sub(r"[ \t]{2,}", " ", CITATION.sub("", text)).strip()


def history_for_model(turns: Sequence[Turn], max_turns: int = HISTORY_TURNS,
                      max_chars: int = HISTORY_CHARS) -> list[dict[str, str]]:
    """The last few turns as chat messages, oldest dropped first until they fit in `max_chars`."""
    pairs: list[tuple[str, str]] = []
    for turn in turns[-max_turns:] if max_turns > 0 else []:
        answer = strip_citations(turn.answer)
        if len(answer) > HISTORY_ANSWER_CHARS:
            answer = answer[:HISTORY_ANSWER_CHARS] + "……"
        pairs.append((turn.question.strip(), answer))
    while pairs and sum(len(q) + len(a) for q, a in pairs) > max_chars:
        pairs.pop(0)
    messages: list[dict[str, str]] = []
    for question, answer in pairs:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def message_text(content: object) -> str:
    """The text of a chat message's content: a string, or OpenAI's list of parts ({"type": "text", ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content
                         if isinstance(part, dict) and part.get("type", "text") in ("text", "input_text"))
    return str(content)


def turns_from_messages(messages: Sequence[dict[str, object]]) -> tuple[str, list[Turn]]:
    """(the question, the earlier turns) of a client-kept conversation (OpenAI chat messages).

    The question is the last user message; earlier user messages paired with the assistant reply
    that follows them become turns, with their topics worked out as the page works them out.
    System and tool messages are not part of the conversation AskAny searches with.
    """
    turns: list[Turn] = []
    pending: str | None = None
    question = ""
    for message in messages:
        role, text = message.get("role"), message_text(message.get("content"))
        if role == "user":
            if pending is not None:  # two user messages in a row: the earlier one had no answer
                turns.append(Turn(pending, retrieval_query(pending, turns)[1], ""))
            pending = question = text
        elif role == "assistant" and pending is not None:
            turns.append(Turn(pending, retrieval_query(pending, turns)[1], text))
            pending = None
    if pending is None:
        return "", turns
    return question, turns
