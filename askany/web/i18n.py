"""The page's words in Chinese and English: the translated strings, and library notices said in them.

`strings(language)` is the table of one UI language; `localize_notice` translates a library
notice by its code (askany/core/notices.py), never by matching English words, and keeps its
`reason` (the underlying error's sentence, which names the fix) as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from askany.core.notices import notice_code

if TYPE_CHECKING:  # only named in annotations: the word tables need nothing of the service at run time
    from askany.service import QAResult, Service

STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "AskAny 文档问答",
        "subtitle": "离线问答：答案来自你的文档，并注明出处。",
        "tab_chat": "问答", "tab_docs": "文档", "tab_status": "状态",
        "chat": "对话", "question": "问题", "placeholder": "输入问题，回车发送（可用 @标签 过滤）",
        "send": "发送", "clear": "清空对话", "copy": "复制", "copied": "已复制",
        "stop": "停止", "regenerate": "重新生成", "new_chat": "新对话",
        "view_source": "查看原文", "viewer": "原文", "viewer_full": "阅读全文", "viewer_close": "关闭",
        "viewer_context": "第 {n} 段（共 {total} 段）及其前后文", "viewer_whole": "全文（显示 {shown}/{total} 段）",
        "viewer_empty": "点击引用 [n] 或资料卡片上的“查看原文”，在这里阅读它在文档中的上下文。",
        "feedback_comment": "补充说明（可选）：哪里不对，正确答案或文档是什么？", "feedback_send": "提交说明",
        "feedback_saved_up": "已记录 👍，谢谢！", "feedback_saved_down": "已记录 👎，可在下方补充说明。",
        "feedback_removed": "已撤回评价。", "feedback_commented": "说明已保存。",
        "feedback_not_answer": "只能评价答案。", "feedback_failed": "无法保存评价：", "sources": "资料来源",
        "sources_empty": "提问后，这里会显示答案引用的资料。",
        "query_type": "问题类型", "qt_auto": "自动", "qt_faq": "常见问题", "qt_docs": "文档",
        "kbs": "知识库", "tags": "标签", "top_k": "资料条数 (top-k)", "rerank": "重排", "thinking": "思考模式",
        "thinking_title": "思考过程", "thinking_live": "思考中…",
        "answer_pending": "正在检索资料…",
        "kind_extracted": "（摘录自资料，未经大模型生成）", "kind_faq": "（来自常见问题库）",
        "error": "无法回答：", "timings": "耗时：",
        "cited": "已引用", "faq": "FAQ", "low": "匹配度较低", "kb": "知识库",
        "earlier": "第 {n} 轮：{q}",
        "upload_title": "上传文档", "upload_files": "选择文件（可多选）", "upload_kb": "导入到知识库",
        "upload_tags": "标签（逗号分隔，可留空）", "upload_button": "上传并导入",
        "upload_none": "请先选择要上传的文件。", "upload_current": "正在处理：{name}",
        "upload_progress": "正在导入：已完成 {done}/{total} 个文件…",
        "upload_done": "导入完成：新增 {new}，更新 {changed}，未变化 {unchanged}，失败 {failed}，跳过 {skipped}。",
        "upload_too_big": "文件大于上传限制 {mb:g} MB（设置 UPLOAD_MAX_MB）",
        "upload_bad_name": "文件名无效",
        "upload_results": "导入结果",
        "col_file": "文件", "col_status": "状态", "col_chunks": "片段数", "col_reason": "原因",
        "col_kb": "知识库", "col_docs": "文档数", "col_faq": "FAQ 文件", "col_tags": "标签",
        "col_time": "导入时间", "col_path": "路径",
        "status_new": "新增", "status_changed": "已更新", "status_unchanged": "未变化", "status_failed": "失败",
        "status_skipped": "跳过", "status_removed": "已移除", "status_claimed": "由另一个导入任务处理",
        "docs_title": "已导入的文档", "docs_kb": "查看知识库", "docs_all": "（全部）", "kb_summary": "知识库概览",
        "doc_list": "文档列表", "doc_pick": "要删除的文档", "delete": "删除文档", "refresh": "刷新",
        "deleted": "已从知识库 {kb} 删除 {name}。", "not_found": "知识库 {kb} 中没有文档 {name}。",
        "pick_doc": "请先选择知识库和要删除的文档。",
        "kb_title": "知识库管理", "kb_new": "新知识库名称", "kb_new_placeholder": "例如：人事制度",
        "kb_create": "创建知识库", "kb_pick": "要删除的知识库", "kb_delete": "删除知识库…",
        "kb_confirm_label": "确认删除：请输入知识库名称", "kb_confirm": "确认删除", "kb_cancel": "取消",
        "kb_created": "已创建知识库 {kb}，现在是上传目标，也可在问答页选择。",
        "kb_confirm_ask": "将删除知识库 {kb} 的全部 {docs} 个文档（{chunks} 个片段、向量、关键词索引和上传的文件），"
                          "无法恢复。请在下方输入 {kb} 后点“确认删除”。",
        "kb_deleted": "已删除知识库 {kb}：{docs} 个文档，{chunks} 个片段，{uploads} 个上传文件。",
        "kb_cancelled": "已取消，没有删除任何内容。", "kb_pick_first": "请先选择要删除的知识库。",
        "kb_mismatch": "输入的名称与 {kb} 不一致，没有删除。",
        "kb_name_empty": "知识库名称不能为空。",
        "kb_name_too_long": "知识库名称太长：最多 {max} 个字符。",
        "kb_name_invisible": "知识库名称含有控制字符或不可见字符，请只用可见字符。",
        "kb_name_separator": "知识库名称不能含有 / 或 \\，也不能是 . 或 ..。",
        "kb_exists": "已有名为 {kb} 的知识库，请换一个名称。",
        "kb_not_found": "没有名为 {kb} 的知识库。",
        "kb_busy": "正在向 {kb} 上传文档，请等上传完成后再删除。",
        "status_title": "组件状态（与 --check 相同）", "db": "数据库", "models": "模型", "settings": "设置",
        "loaded": "已加载", "available": "可用（首次使用时加载）", "unavailable": "不可用",
        "not_configured": "未配置，使用 jieba 分词", "tokenizer": "分词", "device": "设备",
        "ocr": "OCR（图片、扫描版 PDF）", "ocr_off": "未启用",
        "location_page": "第 {n} 页", "location_slide": "第 {n} 张幻灯片",
        "role_embedding": "向量模型", "role_reranker": "重排模型", "role_llm": "大模型",
        "role_hanlp": "HanLP 分词",
        "all_ok": "所需组件均已就绪。", "some_missing": "有必需的组件缺失，修复方法见上。",
        "off_llm": "未加载大模型，显示的是从资料中摘录的答案：",
        "off_llm_none": "未启用大模型（LLM_BACKEND=none），显示的是从资料中摘录的答案。开启方法：设置 "
                        "LLM_BACKEND=transformers 并下载模型：python -m askany.main --download-models llm",
        "off_reranker": "未加载重排模型，资料按融合排序显示：",
        "off_reranker_disabled": "重排已关闭（RERANKER_ENABLED=false）；开启方法：设置 RERANKER_ENABLED=true。",
        "off_embedding": "未加载向量模型，只用关键词检索：",
        "off_embedding_disabled": "向量检索已关闭（EMBEDDING_ENABLED=false）；开启方法：设置 EMBEDDING_ENABLED=true。",
        "notice": "提示：",
        "notice_keyword_rebuilt": "关键词索引已根据已存储的文本重建（{reason}），共 {count} 个片段。",
        "notice_answer_cut": "回答未完成就中断了：{reason}",
        "notice_stopped": "已停止生成，以上是停止前写出的内容。",
        "notice_no_answer_within_tokens": "模型在 LLM_MAX_NEW_TOKENS={max_new_tokens} 个词元内没有写出答案；请调大该值或关闭思考。",
        "notice_context_no_room": "上下文窗口（{window} 个词元）扣除 LLM_MAX_NEW_TOKENS={max_new_tokens} 后放不下资料；请调大 LLM_CONTEXT_WINDOW 或调小 LLM_MAX_NEW_TOKENS。",
        "notice_question_too_long": "问题太长，超出了模型的上下文窗口（{window} 个词元）；请缩短问题或调大 LLM_CONTEXT_WINDOW。",
        "notice_vector_mismatch": "向量检索不可用：{reason}",
        "notice_embedding_off": "向量功能已关闭（EMBEDDING_ENABLED=false），文档只建立关键词索引。",
        "notice_no_vectors": "没有写入向量：{reason}",
        "notice_vectors_stopped": "写入 {written} 个分块的向量后中断：{reason}；之后的分块已保存但没有向量（关键词检索可以找到），下次导入时补上",
        "brief_reranker": "未加载重排模型，资料按融合排序显示（开启方法见页面顶部或“状态”页）。",
        "brief_embedding": "未加载向量模型，只用关键词检索（开启方法见页面顶部或“状态”页）。",
        "stage_embed": "向量化", "stage_keyword": "关键词检索", "stage_vector": "向量检索",
        "stage_fused": "融合", "stage_rerank": "重排", "stage_load": "加载模型", "stage_first_token": "首字",
        "stage_generate": "生成", "stage_extract": "摘录", "stage_total": "总计",
    },
    "en": {
        "title": "AskAny document Q&A",
        "subtitle": "Offline question answering: answers come from your documents, with citations.",
        "tab_chat": "Chat", "tab_docs": "Documents", "tab_status": "Status",
        "chat": "Conversation", "question": "Question",
        "placeholder": "Ask a question, Enter to send (@tag filters)",
        "send": "Send", "clear": "Clear chat", "copy": "Copy", "copied": "Copied",
        "stop": "Stop", "regenerate": "Regenerate", "new_chat": "New conversation",
        "view_source": "Open", "viewer": "Source text", "viewer_full": "Read the whole document",
        "viewer_close": "Close",
        "viewer_context": "Passage {n} of {total} with its neighbours", "viewer_whole": "Whole text ({shown}/{total} passages)",
        "viewer_empty": "Click a citation [n] or a source card's Open to read it in its document here.",
        "feedback_comment": "Comment (optional): what was wrong, which answer or document is right?",
        "feedback_send": "Send comment",
        "feedback_saved_up": "👍 recorded, thank you!", "feedback_saved_down": "👎 recorded; add a comment below.",
        "feedback_removed": "Rating taken back.", "feedback_commented": "Comment saved.",
        "feedback_not_answer": "Only answers can be rated.", "feedback_failed": "Could not save the rating: ", "sources": "Sources",
        "sources_empty": "The passages behind the answer appear here after you ask.",
        "query_type": "Query type", "qt_auto": "Auto", "qt_faq": "FAQ", "qt_docs": "Documents",
        "kbs": "Knowledge bases", "tags": "Tags", "top_k": "Passages (top-k)", "rerank": "Rerank",
        "thinking": "Thinking", "thinking_title": "Thinking", "thinking_live": "thinking…",
        "answer_pending": "Searching the documents…",
        "kind_extracted": "(extracted from the documents, not written by a language model)",
        "kind_faq": "(from the FAQ)", "error": "Cannot answer: ", "timings": "Time: ",
        "cited": "cited", "faq": "FAQ", "low": "weak match", "kb": "KB",
        "earlier": "Turn {n}: {q}",
        "upload_title": "Upload documents", "upload_files": "Files (several allowed)",
        "upload_kb": "Knowledge base", "upload_tags": "Tags (comma-separated, optional)",
        "upload_button": "Upload and ingest", "upload_none": "Choose files to upload first.", "upload_current": "Working on: {name}",
        "upload_progress": "Ingesting: {done}/{total} files done…",
        "upload_done": "Done: {new} new, {changed} changed, {unchanged} unchanged, {failed} failed, "
                       "{skipped} skipped.",
        "upload_too_big": "larger than the {mb:g} MB upload limit (UPLOAD_MAX_MB)",
        "upload_bad_name": "invalid file name", "upload_results": "Results",
        "col_file": "File", "col_status": "Status", "col_chunks": "Chunks", "col_reason": "Reason",
        "col_kb": "Knowledge base", "col_docs": "Documents", "col_faq": "FAQ files", "col_tags": "Tags",
        "col_time": "Ingested", "col_path": "Path",
        "status_new": "new", "status_changed": "changed", "status_unchanged": "unchanged",
        "status_failed": "failed", "status_skipped": "skipped", "status_removed": "removed",
        "status_claimed": "left to another ingestion run",
        "docs_title": "Ingested documents", "docs_kb": "Knowledge base", "docs_all": "(all)",
        "kb_summary": "Knowledge bases", "doc_list": "Documents", "doc_pick": "Document to delete",
        "delete": "Delete document", "refresh": "Refresh",
        "deleted": "Deleted {name} from knowledge base {kb}.", "not_found": "No document {name} in {kb}.",
        "pick_doc": "Choose a knowledge base and a document first.",
        "kb_title": "Knowledge bases", "kb_new": "New knowledge base", "kb_new_placeholder": "e.g. hr-policies",
        "kb_create": "Create knowledge base", "kb_pick": "Knowledge base to delete",
        "kb_delete": "Delete knowledge base…", "kb_confirm_label": "To confirm, type the knowledge base's name",
        "kb_confirm": "Delete for good", "kb_cancel": "Cancel",
        "kb_created": "Created knowledge base {kb}: it is now the upload target and can be chosen in the chat.",
        "kb_confirm_ask": "This deletes all {docs} documents of {kb} ({chunks} passages, their vectors, keyword "
                          "index and uploaded files) for good. Type {kb} below, then press Delete for good.",
        "kb_deleted": "Deleted knowledge base {kb}: {docs} documents, {chunks} passages, {uploads} uploaded files.",
        "kb_cancelled": "Cancelled; nothing was deleted.", "kb_pick_first": "Choose a knowledge base to delete first.",
        "kb_mismatch": "The name typed is not {kb}; nothing was deleted.",
        "kb_name_empty": "The knowledge base name is empty.",
        "kb_name_too_long": "The knowledge base name is too long: at most {max} characters.",
        "kb_name_invisible": "The knowledge base name holds control or invisible characters; use visible ones only.",
        "kb_name_separator": "A knowledge base name cannot hold / or \\, nor be . or ..",
        "kb_exists": "A knowledge base named {kb} already exists; choose another name.",
        "kb_not_found": "There is no knowledge base named {kb}.",
        "kb_busy": "Documents are being uploaded into {kb}; delete it once the upload has finished.",
        "status_title": "Components (as --check shows them)", "db": "Database", "models": "Models",
        "settings": "Settings",
        "loaded": "loaded", "available": "available (loads on first use)", "unavailable": "unavailable",
        "not_configured": "not configured, jieba is used", "tokenizer": "Tokenizer", "device": "Device",
        "ocr": "OCR (images, scanned PDFs)", "ocr_off": "off",
        "location_page": "page {n}", "location_slide": "slide {n}",
        "role_embedding": "Embedding", "role_reranker": "Reranker", "role_llm": "LLM", "role_hanlp": "HanLP",
        "all_ok": "All required components are ready.",
        "some_missing": "Something required is missing: see above for the fix.",
        "off_llm": "No language model loaded; the answer is extracted from the documents: ",
        "off_llm_none": "No language model (LLM_BACKEND=none); answers are extracted from the documents. "
                        "To turn it on, set LLM_BACKEND=transformers and run: "
                        "python -m askany.main --download-models llm",
        "off_reranker": "No reranker loaded; passages keep the fused order: ",
        "off_reranker_disabled": "Reranking is off (RERANKER_ENABLED=false); set RERANKER_ENABLED=true.",
        "off_embedding": "No embedding model loaded; keyword search only: ",
        "off_embedding_disabled": "Vector search is off (EMBEDDING_ENABLED=false); set EMBEDDING_ENABLED=true.",
        "notice": "Note: ",
        "notice_keyword_rebuilt": "The keyword index was rebuilt from the stored text ({reason}); {count} chunks.",
        "notice_answer_cut": "The answer was cut short: {reason}",
        "notice_stopped": "Stopped: the answer is what was written until then.",
        "notice_no_answer_within_tokens": "The model wrote no answer within LLM_MAX_NEW_TOKENS={max_new_tokens}; raise it or turn thinking off.",
        "notice_context_no_room": "The context window ({window} tokens) leaves no room for passages after LLM_MAX_NEW_TOKENS={max_new_tokens}; raise LLM_CONTEXT_WINDOW or lower LLM_MAX_NEW_TOKENS.",
        "notice_question_too_long": "The question is too long for the model's context window ({window} tokens); shorten it or raise LLM_CONTEXT_WINDOW.",
        "notice_vector_mismatch": "Vector search unavailable: {reason}",
        "notice_embedding_off": "Vectors are off (EMBEDDING_ENABLED=false): documents get a keyword index only.",
        "notice_no_vectors": "No vectors written: {reason}",
        "notice_vectors_stopped": ("Vectors stopped after {written} chunks: {reason}; the chunks after them are "
                                   "stored without vectors (keyword search finds them) and the next run adds them"),
        "brief_reranker": "No reranker loaded; passages keep the fused order (see the banner or Status for the fix).",
        "brief_embedding": "No embedding model loaded; keyword search only (see the banner or Status for the fix).",
        "stage_embed": "embed", "stage_keyword": "keyword", "stage_vector": "vector", "stage_fused": "fused",
        "stage_rerank": "rerank", "stage_load": "model load", "stage_first_token": "first token",
        "stage_generate": "generate", "stage_extract": "extract", "stage_total": "total",
    },
}


def strings(language: str) -> dict[str, str]:
    """The strings for a UI language, falling back to Chinese (the first language) for unknown ones."""
    return STRINGS.get(language, STRINGS["zh"])


def kb_problem(error: Exception, language: str) -> str:
    """A knowledge-base error (askany.service.KnowledgeBaseError) as one sentence in the UI's language,
    found by its code; any other error keeps its own sentence."""
    from askany.service.knowledge_bases import MAX_KB_NAME_CHARS

    key = "kb_" + str(getattr(error, "code", ""))
    table = strings(language)
    if key not in table:
        return str(error)
    return table[key].format(kb=getattr(error, "kb", "") or "", max=MAX_KB_NAME_CHARS)


# notice code -> (key of the full text, key of the brief text); the reason (an English sentence
# that names the fix) follows the full text when the full text ends with a colon.
_NOTICES = {
    "rerank_unavailable": ("off_reranker", "brief_reranker"),
    "vector_unavailable": ("off_embedding", "brief_embedding"),
    "rerank_off": ("off_reranker_disabled", "off_reranker_disabled"),
    "vector_off": ("off_embedding_disabled", "off_embedding_disabled"),
    "llm_off": ("off_llm_none", "off_llm_none"),
}


def localize_notice(notice: str, extracted: bool, language: str = "zh", brief: bool = False) -> str:
    """A library notice in the UI's language, found by its code (core/notices.py), its reason kept.

    `brief` gives a model-missing retrieval notice without its fix: under every
    answer it would repeat the banner, which already says how to turn it on.
    """
    t = strings(language)
    code = notice_code(notice)
    reason = getattr(notice, "params", {}).get("reason", "")
    if code in _NOTICES:
        full, short = _NOTICES[code]
        if brief:
            return t[short]
        return t[full] + reason if t[full].endswith((":", "：", ": ")) else t[full]
    if code and f"notice_{code}" in t:
        return t[f"notice_{code}"].format(**notice.params)
    if extracted:
        return t["off_llm"] + (reason or notice)
    return t["notice"] + notice


def answer_notices(result: QAResult, language: str = "zh") -> list[str]:
    """The notices of one answer, the one explaining an extracted answer first."""
    extracted = result.answer.kind == "extracted"
    answer_notice = result.answer.notice
    notices = [localize_notice(answer_notice, extracted, language)] if answer_notice else []
    for notice in result.notices:
        if notice != answer_notice:
            notices.append(localize_notice(notice, False, language, brief=True))
    return notices


def availability_notices(service: Service, language: str = "zh") -> list[str]:
    """What is switched off or missing and how to turn it on, without loading any weights."""
    t = strings(language)
    settings = service.settings
    problems = service.model_problems()
    notices: list[str] = []
    if settings.llm_backend == "none":
        notices.append(t["off_llm_none"])
    elif settings.llm_backend == "transformers" and (reason := problems.get("llm")):
        notices.append(t["off_llm"] + reason)
    if not settings.reranker_enabled:
        notices.append(t["off_reranker_disabled"])
    elif reason := problems.get("reranker"):
        notices.append(t["off_reranker"] + reason)
    if not settings.embedding_enabled:
        notices.append(t["off_embedding_disabled"])
    elif reason := problems.get("embedding"):
        notices.append(t["off_embedding"] + reason)
    return notices
