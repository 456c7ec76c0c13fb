"""Answers from passages: prompts, the thinking split, context fitting, LLM backends, the extractive fallback.

Other packages import from here, not from the modules inside, so the modules can move:
prompt (messages and answer texts), answer (Answer, citations), thinking (<think> split),
fitting (context window), extractive (no-LLM answers), backends (Generator, GenerationOptions,
transformers and OpenAI-compatible), answerer (Answerer, which ties them together).
"""

from askany.generation.answer import Answer, citation_numbers
from askany.generation.answerer import Answerer
from askany.generation.backends import GenerationOptions, Generator
from askany.generation.extractive import extractive_answer
from askany.generation.prompt import Passage
from askany.generation.thinking import ThinkingSplitter, split_thinking

__all__ = ["Answer", "Answerer", "GenerationOptions", "Generator", "Passage", "ThinkingSplitter",
           "citation_numbers", "extractive_answer", "split_thinking"]
