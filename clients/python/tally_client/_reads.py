"""Typed reads: each is one GET of Tally's API (usage, summary, invoices, credits, entitlements, receipts). The
sync client runs them directly, the asyncio client in a worker thread."""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, TypedDict, Union

from ._http import expect_ok, get, segment

JSON = Dict[str, Any]


class _UsageBucket(TypedDict):
    start: str
    end: str
    value: str
    count: int


class UsageBucket(_UsageBucket, total=False):
    dimensions: Dict[str, Optional[str]]


class UsageSeries(TypedDict):
    customer: str
    meter: str
    granularity: str
    data: List[UsageBucket]
    as_of: str


class EventReceipt(TypedDict):
    id: str
    customer: str
    meter: str
    value: str
    timestamp: str
    properties: Optional[Dict[str, str]]
    received_at: str


class _Entitlement(TypedDict):
    allowed: bool
    quantity: str
    state: str
    resets_at: str
    as_of: str


class Entitlement(_Entitlement, total=False):
    hard: str
    soft: str
    remaining: str
    credits: str


@dataclass
class Read:
    path: str
    query: Mapping[str, Any]
    answer: Callable[[int, Any, Dict[str, str]], Any]


def _ok(path: str) -> Callable[[int, Any, Dict[str, str]], Any]:
    return lambda status, body, _headers: expect_ok(path, status, body)


def usage(
    customer: str,
    meter: str,
    granularity: str,
    from_: str,
    to: str,
    group_by: Optional[List[str]] = None,
    filters: Optional[Mapping[str, Union[str, List[str]]]] = None,
) -> Read:
    query: Dict[str, Any] = {"customer": customer, "meter": meter, "granularity": granularity, "from": from_, "to": to}
    if group_by:
        query["group_by"] = ",".join(group_by)
    if filters:
        query["filter"] = filters
    return Read("/v1/usage", query, _ok("/v1/usage"))


def summary(customer: str, period: Optional[str]) -> Read:
    path = f"/v1/customers/{segment(customer)}/summary"
    return Read(path, {"period": period}, _ok(path))


def invoice_preview(customer: str, period: Optional[str]) -> Read:
    path = f"/v1/customers/{segment(customer)}/invoice"
    return Read(path, {"period": period}, _ok(path))


def invoices(customer: Optional[str], status: Optional[str], period: Optional[str], limit: Optional[int]) -> Read:
    query = {"customer": customer, "status": status, "period": period, "limit": limit}
    return Read("/v1/invoices", query, lambda s, b, _h: expect_ok("/v1/invoices", s, b)["data"])


def invoice(id: str) -> Read:
    path = f"/v1/invoices/{segment(id)}"
    return Read(path, {}, _ok(path))


def credits(customer: str) -> Read:
    path = f"/v1/customers/{segment(customer)}/credits"
    return Read(path, {}, _ok(path))


def entitlement(customer: str, meter: str) -> Read:
    """A block (429 with allowed false) is an answer: Tally's problem with `retry_after_seconds`."""
    path = f"/v1/entitlements/{segment(customer)}/{segment(meter)}"

    def answer(status: int, body: Any, headers: Dict[str, str]) -> Any:
        if status == 429 and isinstance(body, dict) and body.get("allowed") is False:
            retry_after = headers.get("retry-after")
            return {**body, "retry_after_seconds": int(retry_after) if retry_after and retry_after.isdigit() else None}
        return expect_ok(path, status, body)

    return Read(path, {}, answer)


def receipt(customer: str, id: str) -> Read:
    """The stored event, or None when none arrived within the dedupe window."""
    path = f"/v1/events/{segment(customer)}/{segment(id)}"
    return Read(path, {}, lambda s, b, _h: None if s == 404 else expect_ok(path, s, b))


def run(base: str, api_key: str, timeout: float, read: Read) -> Any:
    status, body, headers = get(base, api_key, read.path, timeout, read.query)
    return read.answer(status, body, headers)
