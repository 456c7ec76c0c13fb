"""Bytes of a text file to text: byte-order marks, UTF-8, GB18030 vs Big5, then a detector.

Used by every format that starts from encoded text (plain text, Markdown, HTML, FAQ files).
Detectors confuse GB18030 and Big5 on short Chinese text, so both are tried strictly and scored
for plausibility first; charset-normalizer only guesses the rest. Control characters mark a
binary file. Newlines come out as ``\\n``.
"""

from __future__ import annotations

import re

from askany.ingestion.loaders.registry import FileSkipped

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Most frequent characters of modern written Chinese (the top of jieba's
# dictionary by word frequency) and their traditional forms, plus a few words
# common in technical documents. Real text is dense in these; text decoded with
# the wrong codec is a near-uniform scatter over thousands of characters.
_COMMON_SIMPLIFIED = (
    "一是人了不在有大中国和为这上他个地年来我会以到时要出的生学说道民家子也成行下们于后就发自之对得主长可过"
    "天作分方用多你着部能市等业全里工公经本都而高政法面门动日进区事代那去心小同北定开产前其军还然起种所如现理"
    "机体表力好外与文当两实重新三么只山水关明从化平建又制南内西没此将员名手最东头者月间无安看见各城十相但已些"
    "正口通想度加第她合院物性战由位常点海意场使次二向治因立数样身情入原问把路被并利老教万知级量任及应资务元美"
    "特期世回系比气总展电科先声提品设或义社很统处四首共形己儿司目基领直计别权话少流命至报给打变果书清活几华解"
    "议更称程今决张导术才保交放管结便走达反再题色五接条规式它改光运信受什组听布百指论强做取技选记真却职号件类"
    "何带据集联完质难增历专每即步认车必言收考求近备具众连调感转请谢网络软件数据信息页码账户设置用户系统文件"
)
_COMMON_TRADITIONAL = (
    "國為這個來會時學說們於後發對長過著業裡裏門動進區開產軍還種現機體與當兩實麼關從沒將員東頭間無見戰點場數樣"
    "問並萬級應資務係氣總電聲設義統處兒領計別權話報給變書幾華議稱決張導術結達題條規運組聽論選記職號類帶據聯質"
    "難歷專認車眾連調轉請謝網絡軟體資料訊息頁碼帳戶設定使用者檔案臺灣"
)
_COMMON_CHARS = frozenset(_COMMON_SIMPLIFIED + _COMMON_TRADITIONAL)
# Scripts that show up when Chinese bytes are decoded with the wrong codec.
_SUSPICIOUS_RANGES = (
    (0x0370, 0x04FF),  # Greek, Cyrillic
    (0x2500, 0x259F),  # box drawing, blocks
    (0x3040, 0x30FF),  # kana
    (0x3400, 0x4DBF),  # CJK extension A (rare characters)
    (0xE000, 0xF8FF),  # private use area
    (0xF900, 0xFAFF),  # compatibility ideographs
)
# Level-1 ("frequently used") ideograph byte ranges of each codec.
_LEVEL_ONE = {"gb18030": (0xB0A1, 0xD7FE), "big5": (0xA440, 0xC67E), "cp950": (0xA440, 0xC67E)}
_PLAUSIBILITY_SAMPLE = 20_000
_CONTROL_CHARS = re.compile(r"[\x01-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of a text file; return the text (BOM stripped, ``\\n`` newlines) and codec name.

    Order: BOM, UTF-8, then GB18030 vs Big5 by strict decoding plus a plausibility
    score (detectors confuse the two on short Chinese text), then charset-normalizer
    for anything else. Traditional characters are kept as written.
    """
    text, encoding = _decode(data)
    if text.startswith("\ufeff"):
        text = text[1:]
    sample = text[:_PLAUSIBILITY_SAMPLE]
    if len(_CONTROL_CHARS.findall(sample)) > max(2, len(sample) // 100):
        raise FileSkipped("binary file")
    return normalize_newlines(text), encoding


def normalize_newlines(text: str) -> str:
    """``\\r\\n`` and lone ``\\r`` become ``\\n``: every later step splits lines on ``\\n`` alone."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes) -> tuple[str, str]:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError:
                raise FileSkipped(f"not valid {codec.upper()} text despite its byte-order mark") from None
    if b"\x00" in data:
        raise FileSkipped("binary file")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    candidates = _chinese_candidates(data)
    if candidates and candidates[0][0] > 0:
        _, text, codec = candidates[0]
        return text, codec
    detected = _charset_normalizer_guess(data)
    if detected is not None:
        return detected
    if candidates:
        _, text, codec = candidates[0]
        return text, codec
    raise FileSkipped("not valid UTF-8/GB18030/Big5 text")


def _chinese_candidates(data: bytes) -> list[tuple[float, str, str]]:
    """Strict GB18030/Big5/CP950 decodes, best plausibility first (ties keep GB18030, listed first)."""
    scored = []
    for order, codec in enumerate(("gb18030", "big5", "cp950")):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        scored.append((_plausibility(text, codec), -order, text, codec))
    scored.sort(reverse=True)
    return [(score, text, codec) for score, _, text, codec in scored]


def _plausibility(text: str, codec: str) -> float:
    """Reward frequent and level-1 ideographs, punish scripts typical of mis-decoding."""
    low, high = _LEVEL_ONE[codec]
    score = 0.0
    for char in text[:_PLAUSIBILITY_SAMPLE]:
        code = ord(char)
        if code < 0x80:
            continue
        if char in _COMMON_CHARS:
            score += 3
        elif 0x4E00 <= code <= 0x9FFF:
            encoded = char.encode(codec, errors="ignore")
            if len(encoded) == 2 and low <= int.from_bytes(encoded, "big") <= high:
                score += 1
        elif any(start <= code <= end for start, end in _SUSPICIOUS_RANGES):
            score -= 3
    return score


def _charset_normalizer_guess(data: bytes) -> tuple[str, str] | None:
    """Last resort for non-Chinese legacy encodings (Latin-1, Shift-JIS, ...)."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        return None
    return str(best), best.encoding
