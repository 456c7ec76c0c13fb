"""The tiny models load through the real library loaders and give sensible output."""

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from tests.support import tiny_models

#: Text from outside the built-in corpus, to check tokenizer coverage honestly.
UNSEEN_CHINESE = "人工智能技术的快速发展正在深刻改变各行各业，企业纷纷部署私有化的大模型。"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any internet connection attempt: every load here must be offline."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def test_common_chinese_chars_cover_gb2312() -> None:
    chars = tiny_models.common_chinese_chars()
    assert len(set(chars)) == len(chars) > 6763
    assert all(c in chars for c in UNSEEN_CHINESE)


@pytest.mark.parametrize("kind", ["wordpiece", "xlmr"])
def test_wordpiece_tokenizers_map_chinese_to_known_tokens(tmp_path: Path, kind: str) -> None:
    tok = _load_tokenizer(tiny_models.build_tokenizer_files(tmp_path / kind, kind))
    ids = tok(UNSEEN_CHINESE, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(UNSEEN_CHINESE)  # one token per character
    assert tok.unk_token_id not in ids
    english = tok("Retrieval works offline 2024", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in english


def test_bert_and_xlmr_special_tokens(tmp_path: Path) -> None:
    bert = _load_tokenizer(tiny_models.build_tokenizer_files(tmp_path / "bert", "wordpiece"))
    pair = bert("问题", "答案")
    assert bert.convert_ids_to_tokens(pair["input_ids"])[0] == "[CLS]"
    assert pair["token_type_ids"][-1] == 1

    xlmr = _load_tokenizer(tiny_models.build_tokenizer_files(tmp_path / "xlmr", "xlmr"))
    pair = xlmr("问题", "答案")
    assert "token_type_ids" not in pair  # XLM-R has one token type
    assert xlmr.convert_ids_to_tokens(pair["input_ids"]) == [
        "<s>",
        "问",
        "题",
        "</s>",
        "</s>",
        "答",
        "案",
        "</s>",
    ]
    assert (xlmr.bos_token_id, xlmr.pad_token_id, xlmr.eos_token_id, xlmr.unk_token_id) == (0, 1, 2, 3)


def test_bpe_tokenizer_round_trips_any_text(tmp_path: Path) -> None:
    tok = _load_tokenizer(tiny_models.build_tokenizer_files(tmp_path / "bpe", "bpe"))
    text = UNSEEN_CHINESE + " Hello, world! 😀 ½"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_embedding_model_loads_with_sentence_transformers(tiny_embedding_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    modules = json.loads((tiny_embedding_dir / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]
    pooling = json.loads((tiny_embedding_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_cls_token"] is True

    model = SentenceTransformer(str(tiny_embedding_dir), local_files_only=True, device="cpu")
    vectors = model.encode(["你好", "世界", UNSEEN_CHINESE])
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] < 0.99 and similarity[0, 2] < 0.99 and similarity[1, 2] < 0.99
    np.testing.assert_allclose(model.encode(["你好"])[0], vectors[0], rtol=1e-5, atol=1e-6)


def test_reranker_loads_with_cross_encoder(tiny_reranker_dir: Path) -> None:
    from sentence_transformers import CrossEncoder

    config = json.loads((tiny_reranker_dir / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaForSequenceClassification"]
    model = CrossEncoder(str(tiny_reranker_dir), local_files_only=True, device="cpu")
    scores = model.predict(
        [("问", "答"), ("北京在哪里？", "北京是中华人民共和国的首都。"), ("天气", UNSEEN_CHINESE)]
    )
    assert scores.shape == (3,)
    assert np.isfinite(scores).all()
    assert len({round(float(s), 4) for s in scores}) == 3  # scores tell pairs apart, not saturated


def test_qwen3_tokenizer_chat_template(tiny_llm_dir: Path) -> None:
    tok = _load_tokenizer(tiny_llm_dir)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    for token in ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"]:
        assert tok.convert_ids_to_tokens(tok(token)["input_ids"]) == [token]
    assert "chat_template" in json.loads((tiny_llm_dir / "tokenizer_config.json").read_text())

    messages = [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好"}]
    prompt = (
        "<|im_start|>system\n你是助手。<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    )
    off = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert off == prompt + "<think>\n\n</think>\n\n"
    on = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert on == prompt
    history = [*messages, {"role": "assistant", "content": "<think>\n想一想\n</think>\n\n答案"}]
    rendered = tok.apply_chat_template(history, tokenize=False)
    assert rendered.endswith("<|im_start|>assistant\n答案<|im_end|>\n")  # old reasoning dropped, as in Qwen3


def test_qwen3_model_generates(tiny_llm_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tok = _load_tokenizer(tiny_llm_dir)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llm_dir), local_files_only=True)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config.vocab_size == len(tok)
    generation = GenerationConfig.from_pretrained(str(tiny_llm_dir), local_files_only=True)
    assert tok.convert_tokens_to_ids("<|im_end|>") in generation.eos_token_id

    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "北京在哪里？"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    inputs = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 6)
    assert isinstance(tok.decode(out[0, inputs["input_ids"].shape[1] :]), str)


def test_hanlp_tokenizer_loads_without_shim(tiny_hanlp_dir: Path) -> None:
    import hanlp
    import transformers.optimization

    assert not hasattr(transformers.optimization, "AdamW")  # the training shim is gone again
    config = json.loads((tiny_hanlp_dir / "config.json").read_text())
    assert Path(config["transformer"]) == (tiny_hanlp_dir / "transformer").resolve()

    tok = hanlp.load(str(tiny_hanlp_dir))
    words = tok("我爱北京天安门")
    assert isinstance(words, list) and all(isinstance(w, str) and w for w in words)
    assert "".join(words) == "我爱北京天安门"
    batch = tok(["今天天气很好。", "请上传公司的规章制度。"])
    assert ["".join(ws) for ws in batch] == ["今天天气很好。", "请上传公司的规章制度。"]


def test_segmented_training_lines_are_a_few_hundred() -> None:
    lines = tiny_models.segmented_training_lines()
    assert len(lines) >= 200
    assert all(" " in line or len(line) <= 4 for line in lines)


def test_builders_leave_global_rng_alone(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_models.build_reranker_model(tmp_path / "reranker")
    assert torch.equal(torch.rand(3), expected)


def test_real_architectures_have_the_real_sizes() -> None:
    """Benchmarks rely on these being the real models' shapes (checked on the meta device, no memory)."""
    import torch
    from transformers import Qwen3ForCausalLM, XLMRobertaModel

    with torch.device("meta"):
        bge = XLMRobertaModel(tiny_models.xlmr_config("large", 250002))
        qwen = Qwen3ForCausalLM(tiny_models.qwen3_config("0.6b", 151669, endoftext_id=0, im_end_id=2))
    assert sum(p.numel() for p in bge.parameters()) == 567_754_752  # BAAI/bge-m3
    assert bge.config.max_position_embeddings == 8194
    assert sum(p.numel() for p in qwen.parameters()) == 596_049_920  # Qwen/Qwen3-0.6B, tied embeddings
    assert qwen.config.tie_word_embeddings and qwen.config.num_key_value_heads == 8


def test_unknown_arch_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown"):
        tiny_models.build_embedding_model(tmp_path, arch="bge-large")  # type: ignore[arg-type]
