"""Tiny random-weight models built locally, so tests never need a model hub.

Model hubs cannot be reached from the development machines or from CI, yet the
code under test must go through the real loaders (``SentenceTransformer``,
``CrossEncoder``, ``AutoModelForCausalLM``, ``hanlp.load``). Each builder here
writes a folder with the same layout as the real model (bge-m3,
bge-reranker-v2-m3, Qwen3, a HanLP tokenizer) but with tiny random weights and
a tokenizer trained in milliseconds on the small corpus below.

The ``arch`` switches build the *real* architectures with random weights: too
big for unit tests, but speed does not depend on weight values, so benchmarks
use them to measure real throughput.

Import as ``from tests.support import tiny_models`` (tests and benchmarks run with the
repository root on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

if TYPE_CHECKING:
    from transformers import Qwen3Config, XLMRobertaConfig


# --------------------------------------------------------------------------- corpus

#: Chinese text written for these tests: everyday topics plus the documents and
#: questions AskAny deals with. One sentence per line after splitting on 。！？
CHINESE_TEXT = """
我爱北京天安门。天安门上太阳升。北京是中华人民共和国的首都，也是全国的政治和文化中心。
上海是中国最大的经济城市，黄浦江从城市中间流过。广州的早茶很有名，游客常常排队等位。
深圳在四十多年里从小渔村发展成了现代化的大都市。杭州西湖的风景非常美丽，春天的时候桃花盛开。
成都人喜欢喝茶、打麻将，生活节奏比较慢。重庆是一座山城，道路上上下下，火锅又麻又辣。
西安有兵马俑和古城墙，是十三个朝代的古都。南京的夫子庙晚上灯火通明，秦淮河上有很多游船。
长江是中国最长的河流，全长约六千三百公里。黄河被称为中华民族的母亲河。
珠穆朗玛峰是世界上海拔最高的山峰。青藏高原的空气稀薄，游客要注意高原反应。
今天天气很好，阳光明媚，适合出去散步。明天可能会下雨，出门记得带伞。
这几天气温降得很快，大家要注意保暖，防止感冒。北方的冬天很冷，但是室内有暖气。
南方的夏天又热又潮湿，很多人离不开空调。秋天是收获的季节，农民们忙着收割稻谷。
我每天早上七点起床，先跑步半个小时，然后吃早饭。早饭通常是豆浆、油条和鸡蛋。
中午我在公司食堂吃饭，菜的种类很多，价格也便宜。晚上回家以后，我喜欢看书或者听音乐。
周末我们全家去公园野餐，孩子们在草地上放风筝。奶奶包的饺子特别好吃，有猪肉白菜馅的，也有韭菜鸡蛋馅的。
妈妈让我去超市买一些水果和蔬菜。苹果五块钱一斤，香蕉三块五一斤。
这家饭店的红烧肉做得很地道，服务员的态度也很热情。我们点了四个菜一个汤，一共花了两百多元。
学生们正在教室里认真地听老师讲课。这次数学考试的题目比较难，很多同学没有做完。
他从小就喜欢读历史书，长大以后成了一名大学教授。图书馆周末也开放，借书需要带上学生证。
学习外语最重要的是坚持，每天都要练习听说读写。她的英语说得很流利，去年通过了六级考试。
医生建议他多喝水、多休息，少吃油腻的食物。医院的挂号系统已经可以在手机上预约了。
坚持锻炼身体可以增强免疫力，减少生病的机会。睡眠不足会影响第二天的工作效率。
人工智能正在改变我们的生活方式和工作方式。大语言模型可以回答问题、写文章，还能翻译多种语言。
机器学习需要大量的数据来训练模型。深度学习在图像识别和语音识别方面取得了很大的进展。
自然语言处理是人工智能的一个重要分支，中文分词是其中的基础任务。
中文句子里的词语之间没有空格，所以需要先分词才能建立关键词索引。
向量检索把文本转换成向量，再根据向量之间的相似度找到相关的段落。
关键词检索擅长匹配专有名词和数字，向量检索擅长理解同义表达，两者结合效果更好。
重排序模型会对候选段落重新打分，把最相关的内容排在前面。
检索增强生成先从知识库中找到相关资料，再让大模型根据资料生成答案。
回答问题的时候，系统会在句子后面标注引用编号，方便用户核对原文。
如果知识库里没有相关的内容，模型应该如实告诉用户不知道，而不是编造答案。
请把公司的规章制度上传到系统里，然后就可以直接提问了。这份文件是去年十二月发布的员工手册。
员工每年可以享受十五天带薪年假，工作满十年以后增加到二十天。请假需要提前三天在系统中提交申请。
报销差旅费用时，需要提供发票、行程单和审批记录。单张发票的金额超过一万元需要部门经理签字。
新员工入职的第一周要参加安全培训和信息系统培训。办公室的门禁卡如果丢失，要及时到行政部补办。
公司的财务报告显示，今年第三季度的营业收入同比增长了百分之十二。
净利润达到三点五亿元，主要来自海外市场的增长。董事会决定向全体股东派发现金红利。
合同双方应当遵守本协议的各项条款，任何一方不得单方面解除合同。
因不可抗力导致合同无法履行的，双方均不承担违约责任。本合同一式两份，甲乙双方各执一份，具有同等法律效力。
服务器的数据库每天凌晨两点自动备份，备份文件保存三十天。
如果系统出现故障，请先检查网络连接，然后重启服务。日志文件记录了每一次请求的时间、用户和处理结果。
用户的密码必须经过加密以后才能存储在数据库中。为了保护隐私，所有的文档都只保存在本地电脑上，不会上传到网络。
这个软件支持批量导入文件，包括文本文件、网页、表格和扫描文档。
导入的时候，系统会把长文档切分成较小的段落，每个段落大约三百到五百个字。
切分时尽量在句号、问号和感叹号的位置断开，避免把一句话拆成两半。
相邻的段落之间保留一小部分重叠，这样上下文就不会丢失。
程序运行的时候会显示进度条，中途停止以后可以从上次的位置继续。
命令行工具的每个命令都有帮助说明，输入参数错误时会给出清楚的提示。
网页界面上有一个聊天窗口，用户可以输入问题，也可以上传新的文档。
中国的四大发明是造纸术、印刷术、火药和指南针。孔子是春秋时期伟大的思想家和教育家。
唐朝是中国历史上最繁荣的朝代之一，诗歌创作达到了高峰。李白和杜甫是唐代最著名的诗人。
床前明月光，疑是地上霜。举头望明月，低头思故乡。
长城东起山海关，西到嘉峪关，全长一万多里。故宫是明清两代的皇宫，现在是博物院，每年接待上千万名游客。
春节是中国最重要的传统节日，家家户户贴春联、放鞭炮、吃年夜饭。
中秋节的时候，一家人团聚在一起赏月、吃月饼。端午节有赛龙舟和吃粽子的习俗。
高铁让城市之间的距离变得越来越近，从北京到上海只需要四个多小时。
地铁是大城市最方便的交通工具，早晚高峰的时候人非常多。
越来越多的人开始使用电动汽车，充电站的数量也在快速增加。
网上购物非常方便，下单以后第二天就能收到快递。移动支付在中国已经非常普及，买菜也可以用手机付款。
手机的电池快没电了，我得找个地方充电。这台电脑的内存是十六个吉字节，硬盘有一个太字节。
请问附近有没有银行？我想换一些人民币。不好意思，我没听清楚，您能再说一遍吗？
谢谢你的帮助，我真的非常感激。没关系，这是我应该做的。
这个问题比我们想象的要复杂得多，需要大家一起讨论。经过反复试验，研究人员终于找到了解决办法。
科学家发现，适量运动可以改善大脑的记忆能力。这项研究成果发表在一本国际学术期刊上。
环境保护是每个人的责任，我们应该节约用水、减少浪费。垃圾分类可以提高资源的回收利用率。
植树造林能够防止水土流失，改善生态环境。这片森林里生活着许多珍稀的野生动物，比如大熊猫和金丝猴。
足球比赛进行到最后一分钟，主队终于踢进了制胜的一球。乒乓球是中国的国球，中国队多次获得世界冠军。
他每天练习钢琴两个小时，已经坚持了整整十年。这部电影讲述了一个普通人追求梦想的故事，感动了很多观众。
小王昨天去银行办理了信用卡，工作人员告诉他两周以后寄到。
李老师在这所中学已经教了二十年的语文，深受学生的喜爱。
张经理明天上午九点要和客户开会，讨论新产品的推广方案。
会议室在三楼的东边，可以容纳五十个人。会议记录整理好以后请发给所有参会人员。
项目计划分为三个阶段：需求分析、系统开发和上线测试。
每个阶段结束的时候都要进行评审，确认没有问题以后再进入下一个阶段。
测试人员发现了几个严重的错误，开发人员正在加班修复。新版本修复了上传大文件时程序崩溃的问题。
我们的产品主要面向中小企业，帮助他们管理内部的文档和知识。客户反馈说搜索结果不够准确，希望能够改进。
经过优化以后，系统回答一个问题平均只需要两秒钟。管理员可以在后台查看每天的提问数量和热门问题。
这本书一共有十二章，第一章介绍了基本概念，最后一章是练习题。请翻到第三十五页，看一下第二段的内容。
文章的作者认为，阅读习惯应该从小培养。报纸上说，今年的粮食产量又创造了新的纪录。
电视台正在直播国庆节的文艺晚会。记者在现场采访了几位来自不同省份的观众。
银行的贷款利率下调了零点二五个百分点。股票市场今天整体上涨，成交量明显放大。
我的朋友在一家互联网公司做软件工程师，经常加班到很晚。他说最近在研究如何提高搜索引擎的速度。
小明的爸爸是一名出租车司机，每天要开十几个小时的车。他的妈妈在附近的小学当老师。
这条街上新开了一家咖啡馆，装修得很有特色。周末的时候，很多年轻人喜欢来这里看书聊天。
火车站的候车室里坐满了回家过年的旅客。飞机因为天气原因推迟起飞，乘客们只好在机场等待。
酒店的房间干净整洁，窗外可以看到大海。前台的工作人员会说英语，入住手续办得很快。
这座桥建于明朝，已经有五百多年的历史了。博物馆里展出了很多珍贵的文物，包括瓷器、书画和青铜器。
他在一家医院当护士，工作很辛苦，但是她很喜欢这份工作。病人出院的时候，特地送来了一面锦旗。
农村的道路修好以后，农产品可以更快地运到城里。村民们通过网络直播销售自己种的水果。
我们应该尊重老人，关心孩子，帮助有困难的人。志愿者们每个周末都去社区为老人提供服务。
天文学家观测到了一颗新的彗星，预计明年春天可以用肉眼看到。月球表面布满了大大小小的环形山。
水在零摄氏度的时候会结冰，在一百摄氏度的时候会沸腾。光的传播速度大约是每秒三十万公里。
计算机由硬件和软件两部分组成。操作系统负责管理计算机的内存、处理器和各种设备。
编程语言有很多种，比如Python、Java和C语言。写代码的时候要注意添加注释，方便别人阅读。
数据库中的表由行和列组成，每一行代表一条记录。建立索引可以大大加快查询的速度。
这篇论文提出了一种新的中文分词方法，在多个数据集上取得了最好的成绩。
作者使用了一百万条标注好的句子来训练模型，并且公开了全部代码。
如何申请护照？需要准备身份证、户口本和近期的照片。办理时间一般是七个工作日。
社保卡可以用来看病、买药，还可以在银行办理存取款业务。
请问这个月的电费是多少？我需要在月底之前交清。物业通知说，下周二上午小区要停水四个小时。
"""

#: A little English so the tokenizers cover ASCII words, numbers and punctuation.
ENGLISH_TEXT = """
The quick brown fox jumps over the lazy dog.
AskAny answers questions about your own documents, offline, with citations.
Retrieval augmented generation finds relevant passages first and then asks the model to answer.
Please upload the PDF, the Word document or the web page you want to search.
The server listens on port 8000 and exposes an OpenAI compatible API.
Version 2.1.5 was released in 2024; it fixed 17 bugs and added 3 new features.
Keyword search with BM25 works well for names, codes and numbers like 42 or 3.14.
Vector search compares embeddings with cosine similarity in PostgreSQL with pgvector.
A reranker scores each (question, passage) pair and keeps the top five.
Email support@example.com or visit https://example.com/docs for help!
"""


def corpus_sentences() -> list[str]:
    """The built-in corpus split into sentences (Chinese on 。！？ and English per line)."""
    sentences: list[str] = []
    for line in CHINESE_TEXT.split():
        buf = ""
        for ch in line:
            buf += ch
            if ch in "。！？":
                sentences.append(buf)
                buf = ""
        if buf:
            sentences.append(buf)
    sentences.extend(line.strip() for line in ENGLISH_TEXT.strip().splitlines())
    return sentences


@functools.cache
def common_chinese_chars() -> str:
    """The 6763 hanzi of GB2312 plus its CJK and full-width punctuation rows.

    Decoding the GB2312 code table gives every common simplified character with
    no data file, so any ordinary Chinese text maps to known tokens, not [UNK].
    """
    chars: list[str] = []
    rows = [0xA1, 0xA3, *range(0xB0, 0xF8)]  # A1 CJK punctuation, A3 full-width ASCII, B0-F7 hanzi
    for hi in rows:
        for lo in range(0xA1, 0xFF):
            with contextlib.suppress(UnicodeDecodeError):
                chars.append(bytes([hi, lo]).decode("gb2312"))
    return "".join(c for c in chars if not c.isspace())


def _ascii_alphabet() -> list[str]:
    return [chr(i) for i in range(33, 127)]


def _training_texts() -> list[str]:
    """Corpus sentences plus one line that makes every ASCII letter/digit a ``##`` continuation."""
    continuation = " ".join("x" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789")
    return [*corpus_sentences(), continuation]


# --------------------------------------------------------------------------- tokenizers

TokenizerKind = Literal["wordpiece", "xlmr", "bpe"]

#: Special tokens of a Qwen3 tokenizer. ``<think>``/``</think>`` are added but not
#: special, as in the real Qwen3 tokenizer, so ``skip_special_tokens`` keeps them.
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_THINK = ["<think>", "</think>"]

#: Qwen3's chat template format, reduced to what AskAny uses: system/user/assistant
#: turns, earlier assistant turns lose their think block, and ``enable_thinking=False``
#: pre-fills an empty think block exactly like the real template.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set content = message['content'] if message['content'] is string else '' -%}"
    "{%- if message['role'] == 'assistant' and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

# Qwen2/3 pre-tokenizer split pattern (digits one at a time, letters in runs).
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _train_wordpiece(specials: tuple[str, ...], unk: str) -> Tokenizer:
    """A fresh copy of the trained WordPiece tokenizer (training runs once per process)."""
    return Tokenizer.from_str(_train_wordpiece_json(specials, unk))


def _train_byte_bpe() -> Tokenizer:
    """A fresh copy of the trained byte-level BPE tokenizer (training runs once per process)."""
    return Tokenizer.from_str(_train_byte_bpe_json())


@functools.cache
def _train_wordpiece_json(specials: tuple[str, ...], unk: str) -> str:
    """Character-level WordPiece for Chinese (like bert-base-chinese), subwords for English."""
    alphabet = [*common_chinese_chars(), *_ascii_alphabet()]
    tok = Tokenizer(models.WordPiece(unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True, strip_accents=None)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=len(alphabet) + 1500,
        special_tokens=list(specials),
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet) + 1000,
        show_progress=False,
    )
    tok.train_from_iterator(_training_texts(), trainer)
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok.to_str()


@functools.cache
def _train_byte_bpe_json() -> str:
    """Byte-level BPE like Qwen's: every string encodes, so there is no unknown token."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=10000,
        special_tokens=QWEN_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Common characters as a training "text" so most of them become one token each.
    chars = common_chinese_chars()
    texts = [*_training_texts(), *(chars[i : i + 50] for i in range(0, len(chars), 50))]
    tok.train_from_iterator(texts, trainer)
    return tok.to_str()


def build_tokenizer_files(folder: Path, kind: TokenizerKind = "wordpiece") -> Path:
    """Train a tokenizer and save it as a transformers fast tokenizer in ``folder``.

    ``wordpiece``: BERT special tokens ([CLS] [SEP] [PAD] [UNK] [MASK]).
    ``xlmr``: the same WordPiece vocabulary with XLM-R's special tokens at XLM-R's ids
    (<s>=0 <pad>=1 </s>=2 <unk>=3), ``<s> A </s></s> B </s>`` pairs and no token type
    ids, so XLM-R models (bge-m3, bge-reranker) accept its output unchanged.
    ``bpe``: Qwen3-style byte-level BPE with chat tokens and a chat template.
    """
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "wordpiece":
        tok = _train_wordpiece(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), unk="[UNK]")
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            mask_token="[MASK]",
            model_max_length=512,
            model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        )
    elif kind == "xlmr":
        tok = _train_wordpiece(("<s>", "<pad>", "</s>", "<unk>", "<mask>"), unk="<unk>")
        bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", bos), ("</s>", eos)],
        )
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            sep_token="</s>",
            pad_token="<pad>",
            cls_token="<s>",
            mask_token="<mask>",
            model_max_length=8192,
            model_input_names=["input_ids", "attention_mask"],
        )
    elif kind == "bpe":
        tok = _train_byte_bpe()
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_THINK])
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            unk_token=None,
            model_max_length=131072,
            chat_template=QWEN3_CHAT_TEMPLATE,
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}: use 'wordpiece', 'xlmr' or 'bpe'")
    hf.save_pretrained(str(folder))
    # transformers 5 writes "TokenizersBackend" (unknown to 4.x) and puts the chat
    # template in chat_template.jinja; write what the real hub folders contain instead.
    config: dict[str, object] = {
        "tokenizer_class": "Qwen2Tokenizer" if kind == "bpe" else "PreTrainedTokenizerFast"
    }
    template_file = folder / "chat_template.jinja"
    if template_file.exists():
        config["chat_template"] = template_file.read_text(encoding="utf-8")
        template_file.unlink()
    _update_json(folder / "tokenizer_config.json", config)
    return folder


def _update_json(path: Path, updates: dict[str, object]) -> None:
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data.update(updates)
    _write_json(path, data)


# --------------------------------------------------------------------------- encoders

EncoderArch = Literal["tiny", "bge-m3"]
RerankerArch = Literal["tiny", "bge-reranker-v2-m3"]

#: XLM-RoBERTa large, as used by bge-m3 and bge-reranker-v2-m3.
_XLMR_LARGE = dict(
    vocab_size=250002,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    max_position_embeddings=8194,
    initializer_range=0.02,
)
#: Tiny XLM-R. The large initializer_range matters: with the usual 0.02 every
#: input gets practically the same CLS vector and tests cannot tell texts apart.
_XLMR_TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=514,
    initializer_range=0.8,
)


def xlmr_config(size: Literal["tiny", "large"], vocab_size: int, **extra: object) -> XLMRobertaConfig:
    """XLM-R config: ``large`` is bge-m3's / bge-reranker-v2-m3's; ``tiny`` fits ``vocab_size``."""
    from transformers import XLMRobertaConfig

    sizes = dict(_XLMR_TINY, vocab_size=vocab_size) if size == "tiny" else dict(_XLMR_LARGE)
    if sizes["vocab_size"] < vocab_size:
        raise ValueError(f"tokenizer has {vocab_size} tokens, more than the model's {sizes['vocab_size']}")
    return XLMRobertaConfig(
        **sizes,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **extra,
    )


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars or load reports from transformers while building."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _building(seed: int) -> Iterator[None]:
    """Deterministic weights without disturbing the caller's RNG state, quietly."""
    import torch

    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _vocab_size(folder: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))


def build_embedding_model(folder: Path, arch: EncoderArch = "tiny", seed: int = 0) -> Path:
    """A sentence-transformers folder laid out like BAAI/bge-m3 (XLM-R, CLS pooling, normalised).

    ``arch="bge-m3"`` gives the real 24-layer, 568M-parameter architecture (2.3 GB,
    about 20 s to build) for speed benchmarks only.
    """
    from transformers import XLMRobertaModel

    if arch not in ("tiny", "bge-m3"):
        raise ValueError(f"unknown embedding arch {arch!r}: use 'tiny' or 'bge-m3'")
    folder = build_tokenizer_files(folder, "xlmr")
    size = "tiny" if arch == "tiny" else "large"
    config = xlmr_config(size, _vocab_size(folder), architectures=["XLMRobertaModel"])
    with _building(seed):
        XLMRobertaModel(config).save_pretrained(str(folder))
    hidden = config.hidden_size
    max_len = 8192 if arch == "bge-m3" else 512
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_len, "do_lower_case": False})
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": True,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
    return folder


def build_reranker_model(folder: Path, arch: RerankerArch = "tiny", seed: int = 1) -> Path:
    """A cross encoder laid out like BAAI/bge-reranker-v2-m3 (XLM-R sequence classifier, one logit).

    ``arch="bge-reranker-v2-m3"`` gives the real XLM-R large size for speed benchmarks.
    """
    import torch
    from transformers import XLMRobertaForSequenceClassification

    if arch not in ("tiny", "bge-reranker-v2-m3"):
        raise ValueError(f"unknown reranker arch {arch!r}: use 'tiny' or 'bge-reranker-v2-m3'")
    folder = build_tokenizer_files(folder, "xlmr")
    config = xlmr_config(
        "tiny" if arch == "tiny" else "large",
        _vocab_size(folder),
        num_labels=1,
        architectures=["XLMRobertaForSequenceClassification"],
    )
    with _building(seed):
        model = XLMRobertaForSequenceClassification(config)
        if arch == "tiny":
            # Keep logits around +-1 so sigmoid scores stay apart instead of saturating near 1.
            with torch.no_grad():
                model.classifier.out_proj.weight.normal_(0.0, 0.5 / config.hidden_size**0.5)
                model.classifier.out_proj.bias.zero_()
        model.save_pretrained(str(folder))
    return folder


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


# --------------------------------------------------------------------------- Qwen3

LlmArch = Literal["tiny", "qwen3-0.6b"]


def qwen3_config(
    size: Literal["tiny", "0.6b"], vocab_size: int, endoftext_id: int, im_end_id: int
) -> Qwen3Config:
    """Qwen3 config: ``0.6b`` is Qwen3-0.6B's (vocab 151936); ``tiny`` fits ``vocab_size``."""
    from transformers import Qwen3Config

    if size == "tiny":
        sizes: dict[str, int] = dict(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        )
    else:
        sizes = dict(
            vocab_size=151936,
            hidden_size=1024,
            intermediate_size=3072,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
        )
    if sizes["vocab_size"] < vocab_size:
        raise ValueError(f"tokenizer has {vocab_size} tokens, more than the model's {sizes['vocab_size']}")
    return Qwen3Config(
        **sizes,
        max_position_embeddings=40960,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=endoftext_id,
        eos_token_id=im_end_id,
        pad_token_id=endoftext_id,
        architectures=["Qwen3ForCausalLM"],
    )


def build_qwen3_model(folder: Path, arch: LlmArch = "tiny", seed: int = 2) -> Path:
    """A ``Qwen3ForCausalLM`` folder with a Qwen-style tokenizer and chat template.

    Token ids differ from real Qwen3 (the tokenizer is trained here), but the
    special tokens, the chat format, ``enable_thinking`` and the generation config
    match. ``arch="qwen3-0.6b"`` gives the real Qwen3-0.6B architecture in bf16
    (1.2 GB) for speed benchmarks.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3ForCausalLM

    if arch not in ("tiny", "qwen3-0.6b"):
        raise ValueError(f"unknown LLM arch {arch!r}: use 'tiny' or 'qwen3-0.6b'")
    folder = build_tokenizer_files(folder, "bpe")
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    endoftext = tok.convert_tokens_to_ids("<|endoftext|>")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    size = "tiny" if arch == "tiny" else "0.6b"
    config = qwen3_config(size, len(tok), endoftext_id=endoftext, im_end_id=im_end)
    with _building(seed):
        model = Qwen3ForCausalLM(config)
        if arch == "qwen3-0.6b":
            model = model.to(torch.bfloat16)  # the real checkpoint is stored in bf16
        model.save_pretrained(str(folder))
    # Same sampling defaults as Qwen3's own generation_config.json.
    GenerationConfig(
        bos_token_id=endoftext,
        eos_token_id=[im_end, endoftext],
        pad_token_id=endoftext,
        do_sample=True,
        temperature=0.6,
        top_k=20,
        top_p=0.95,
    ).save_pretrained(str(folder))
    return folder


# --------------------------------------------------------------------------- HanLP


def segmented_training_lines() -> list[str]:
    """Chinese corpus sentences and their clauses, word-segmented by jieba, one per line.

    Clauses (split at ，；：) roughly double the samples, so the tagger sees a few
    hundred short examples without more hand-written text.
    """
    import jieba

    jieba.setLogLevel(logging.WARNING)
    samples: list[str] = []
    for sentence in corpus_sentences():
        if not any("\u4e00" <= ch <= "\u9fff" for ch in sentence):
            continue
        samples.append(sentence)
        clause = ""
        for ch in sentence:
            clause += ch
            if ch in "，；：":
                samples.append(clause)
                clause = ""
    return [" ".join(w for w in jieba.cut(s) if w.strip()) for s in samples]


def _adamw_shim(
    params: object,
    *args: object,
    no_deprecation_warning: bool = False,
    correct_bias: bool = True,
    **kwargs: object,
) -> object:
    """Stand-in for ``transformers.optimization.AdamW``, removed in transformers 5.

    HanLP 2.1's trainer builds its optimizer with it, passing ``no_deprecation_warning``,
    which torch's AdamW rejects. Needed only while fitting.
    """
    import torch

    return torch.optim.AdamW(params, *args, **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def _hanlp_training_shims() -> Iterator[None]:
    """Install the test-only shims HanLP 2.1.5 training needs under transformers 5, then undo them."""
    import transformers
    import transformers.optimization as optimization

    saved = {mod: mod.__dict__.get("AdamW") for mod in (optimization, transformers)}
    for mod in saved:
        mod.AdamW = _adamw_shim  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for mod, old in saved.items():
            if old is None:
                mod.__dict__.pop("AdamW", None)
            else:
                mod.AdamW = old  # type: ignore[attr-defined]


@contextlib.contextmanager
def _quiet_hanlp() -> Iterator[logging.Logger]:
    """Send HanLP's training chatter to a logger and its progress lines to nowhere.

    HanLP's progress printers bind ``sys.stdout``/``sys.stderr`` when imported, so
    redirecting the streams alone is not enough.
    """
    import io

    from hanlp.utils import log_util, time_util

    sink = io.StringIO()
    printer = log_util._printer
    old_out, printer.out = printer.out, sink
    timer_init = time_util.CountdownTimer.__init__
    old_defaults, timer_init.__defaults__ = timer_init.__defaults__, (sink,)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield logging.getLogger(__name__ + ".hanlp")
    finally:
        printer.out = old_out
        timer_init.__defaults__ = old_defaults


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Train on one thread: ops on a 32-wide model are too small to split, and with a
    second busy process on these 2-core machines, two threads made training 30x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _preserve_global_rng() -> Iterator[None]:
    """HanLP's fit seeds python, numpy and torch globally; put them back afterwards."""
    import random

    import numpy as np
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def build_hanlp_tokenizer(folder: Path, transformer_folder: Path | None = None, epochs: int = 3) -> Path:
    """Train HanLP's ``TransformerTaggingTokenizer`` on the segmented corpus and save it in ``folder``.

    ``hanlp.load(str(folder))`` then loads it offline with no shim. HanLP records the
    transformer's path in its config and reads that transformer's config and tokenizer
    at load time, so the transformer (``transformer_folder``, or a new tiny XLM-R
    encoder when None) is copied to ``folder/transformer`` to keep the folder whole.
    The recorded path is absolute: rebuild rather than move the folder. Takes about
    a second; segmentation quality is poor (F1 ~0.3) but the output is words.
    """
    from hanlp.components.tokenizers.transformer import TransformerTaggingTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    transformer = folder / "transformer"
    if transformer_folder is None:
        build_embedding_model(transformer)
    else:
        shutil.copytree(transformer_folder, transformer, dirs_exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tiny-hanlp-") as tmp:
        train = Path(tmp) / "train.txt"
        train.write_text("\n".join(segmented_training_lines()) + "\n", encoding="utf-8")
        with (
            _hanlp_training_shims(),
            _preserve_global_rng(),
            _one_torch_thread(),
            _quiet_transformers(),
            _quiet_hanlp() as logger,
        ):
            TransformerTaggingTokenizer().fit(
                str(train),
                str(train),
                str(folder),
                transformer=str(transformer.resolve()),
                epochs=epochs,
                batch_size=16,
                lr=3e-3,
                transformer_lr=3e-4,
                word_dropout=0.0,
                devices=-1,
                seed=0,
                logger=logger,
            )
    return folder
