"""What a file's records say about each other: unique ids, references that resolve, requests paired with
responses, and one WARC-Date per capture.

Memory grows with the number of records (an id, a date and a URI each), never with their size.
"""

from __future__ import annotations

from typing import NamedTuple


class LinkProblem(NamedTuple):
    code: str
    message: str
    offset: int
    record_id: str | None
    url: str | None
    target: str | None = None  # the record id a dangling reference names


class _Record(NamedTuple):
    offset: int
    date: str | None
    rtype: str
    uri: str | None


_REFERENCE_CODES = {
    "warc-concurrent-to": ("dangling-concurrent-to", "WARC-Concurrent-To"),
    "warc-refers-to": ("dangling-refers-to", "WARC-Refers-To"),
    "warc-warcinfo-id": ("dangling-warcinfo-id", "WARC-Warcinfo-ID"),
}
_ANSWERS = frozenset({"response", "revisit"})
_REQUEST_PARTNERS = frozenset({"response", "revisit", "metadata"})


class RecordLinks:
    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}
        self._refs: list[tuple[str, str, str, int, str | None]] = []  # (field, source id, target, offset, url)
        self._concurrent: list[tuple[str, str]] = []  # (source id, target id)
        self._answers: list[str] = []  # response and revisit ids
        self._requests: list[str] = []
        self._head_requests: set[tuple[str | None, str | None]] = set()  # (uri, date) of HEAD requests
        self._head_request_ids: set[str] = set()

    def add(self, rtype: str, record_id: str | None, date: str | None, uri: str | None, offset: int,
            concurrent: list[str], refers_to: str | None, warcinfo_id: str | None,
            method: str | None = None) -> LinkProblem | None:
        """Register a record; returns a duplicate-id problem at once (the others wait for `finish`)."""
        if record_id is None:
            return None
        first = self.records.get(record_id)
        if first is not None:
            return LinkProblem("duplicate-record-id", f"WARC-Record-ID {record_id} was already used by the "
                                                      f"{first.rtype} record at offset {first.offset}",
                               offset, record_id, uri)
        self.records[record_id] = _Record(offset, date, rtype, uri)
        for target in concurrent:
            self._concurrent.append((record_id, target))
            self._refs.append(("warc-concurrent-to", record_id, target, offset, uri))
        if refers_to is not None:
            self._refs.append(("warc-refers-to", record_id, refers_to, offset, uri))
        if warcinfo_id is not None:
            self._refs.append(("warc-warcinfo-id", record_id, warcinfo_id, offset, uri))
        if rtype in _ANSWERS:
            self._answers.append(record_id)
        elif rtype == "request":
            self._requests.append(record_id)
            if method == "HEAD":
                self._head_requests.add((uri, date))
                self._head_request_ids.add(record_id)
        return None

    def answers_head_request(self, record_id: str | None, uri: str | None, date: str | None) -> bool:
        """True when the response answers a HEAD request (so an empty body is right). Valid after all `add`s."""
        if (uri, date) in self._head_requests:
            return True
        return any(source in self._head_request_ids for source, target in self._concurrent if target == record_id)

    def finish(self) -> list[LinkProblem]:
        records = self.records
        problems: list[LinkProblem] = []
        for field, source, target, offset, url in self._refs:
            if target not in records:
                code, name = _REFERENCE_CODES[field]
                problems.append(LinkProblem(code, f"{name} {target} names no record in this file", offset, source,
                                            url, target))
        partners: dict[str, set[str]] = {}
        for source, target in self._concurrent:
            other = records.get(target)
            if other is None:
                continue
            mine = records[source]
            partners.setdefault(source, set()).add(other.rtype)
            partners.setdefault(target, set()).add(mine.rtype)
            if mine.date != other.date and mine.date and other.date:
                problems.append(LinkProblem("capture-date-mismatch", f"WARC-Date {mine.date} differs from "
                                            f"{other.date} of the concurrent {other.rtype} record {target}",
                                            mine.offset, source, mine.uri))
        request_keys = {(records[i].uri, records[i].date) for i in self._requests}
        answer_keys = {(records[i].uri, records[i].date) for i in self._answers}
        for record_id in self._answers:
            rec = records[record_id]
            if "request" not in partners.get(record_id, ()) and (rec.uri, rec.date) not in request_keys:
                problems.append(LinkProblem("response-without-request", f"the {rec.rtype} for {rec.uri} has no "
                                            "request record (none is concurrent with it or shares its URI and "
                                            "date)", rec.offset, record_id, rec.uri))
        for record_id in self._requests:
            rec = records[record_id]
            if not (partners.get(record_id, set()) & _REQUEST_PARTNERS) and (rec.uri, rec.date) not in answer_keys:
                problems.append(LinkProblem("request-without-response", f"the request for {rec.uri} has no "
                                            "response, revisit or metadata record with it", rec.offset, record_id,
                                            rec.uri))
        return problems
