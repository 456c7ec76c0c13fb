"""XML parsing for every XML-based format: no DTDs, no entities, no network, and bounded work.

lxml (libxml2) with ``resolve_entities=False``, ``no_network=True``, ``load_dtd=False`` and
``huge_tree=False`` (text nodes up to 10 MB, nesting up to 256 levels; libxml2 also stops entity
amplification). A part that declares a DOCTYPE is refused outright, as defusedxml's
``forbid_dtd`` does: Office XML never has one, so no entity, internal or external, is expanded.

Parsing is incremental: the part is fed to the parser 64 KB at a time, and every start tag in a
chunk is charged to the file's ``WorkBudget`` before the parser sees it (``<`` cannot occur raw
in XML text or attribute values, so counting it is counting elements, at memory speed). A part
with millions of elements is refused once the budget is spent, before they are built; events
come only for the tags a caller asks for, and a caller that ``release``s what it has used keeps
memory flat. (An event for every element costs 3.5 µs here, events for paragraphs and tables only
cut a DOCX's parse by half.)
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, Protocol

from askany.ingestion.loaders.common import short_error
from askany.ingestion.loaders.limits import WorkBudget
from askany.ingestion.loaders.registry import FileSkipped

_CHUNK = 64 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def iter_elements(source: Readable, part: str, budget: WorkBudget,
                  tags: Collection[str] | None = None) -> Iterator[Any]:
    """Each element of the XML in ``source`` (of ``tags`` only, if given) as its end tag is parsed,
    children before parents; the root comes last when no tags are given."""
    from lxml import etree

    parser = etree.XMLPullParser(events=("end",), tag=tags, resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True)
    checked, seen = False, 0
    try:
        while chunk := source.read(_CHUNK):
            seen += _start_tags(chunk)
            budget.reach(part, seen)
            parser.feed(chunk)
            for _, element in parser.read_events():
                checked = checked or _refuse_dtd(element, part, budget)
                yield element
        root = parser.close()
    except etree.XMLSyntaxError as error:
        raise FileSkipped(f"corrupt {budget.kind}: invalid XML in {part}: {_parser_message(error)}") from None
    if not checked:
        _refuse_dtd(root, part, budget)


def count_elements(source: Readable, part: str, budget: WorkBudget) -> None:
    """Charge a part's elements to the budget without parsing it: a pass at unpacking speed (0.5 s
    for 100 MB here) that refuses what parsing would spend minutes on before refusing."""
    seen = 0
    while chunk := source.read(1 << 20):
        seen += _start_tags(chunk)
        budget.reach(part, seen)


def _start_tags(chunk: bytes) -> int:
    # A tag split across two chunks may count once too often; comments and PIs count too (a few).
    return chunk.count(b"<") - chunk.count(b"</")


def parse_tree(source: Readable, part: str, budget: WorkBudget) -> Any:
    """A small part (relationships, styles, properties) parsed whole, with the same rules."""
    root = None
    for element in iter_elements(source, part, budget):
        root = element
    if root is None:
        raise FileSkipped(f"corrupt {budget.kind}: {part} is empty")
    return root


def _refuse_dtd(element: Any, part: str, budget: WorkBudget) -> bool:
    """The DOCTYPE, if any, precedes the first element, so one check per part settles it."""
    if element.getroottree().docinfo.doctype:
        raise FileSkipped(f"{budget.kind} part {part} declares a DTD, which is not allowed")
    return True


def release(element: Any) -> None:
    """Free an element that has been used, and its earlier siblings: iterparse keeps them all otherwise."""
    element.clear()
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _parser_message(error: Exception) -> str:
    # libxml2 suggests XML_PARSE_HUGE for its safety limits, a flag no user can set here.
    return short_error(error).replace(", try XML_PARSE_HUGE", "")
