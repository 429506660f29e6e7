"""HTTP with the standard library (http.client): one POST of a batch, and GETs for the reads. A network failure or
timeout is an outcome to retry, never an exception."""

import http.client
import json
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import quote, urlencode, urlsplit

from ._core import Outcome, classify
from ._errors import TallyApiError

USER_AGENT = "tally-client-python/0.1"


def _connection(base: str, timeout: float) -> Tuple[http.client.HTTPConnection, str]:
    u = urlsplit(base)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    return cls(u.hostname or "localhost", u.port, timeout=timeout), u.path.rstrip("/")


def request(
    base: str, api_key: str, method: str, path: str, body: Optional[bytes], headers: Mapping[str, str], timeout: float
) -> Tuple[int, str, Dict[str, str]]:
    conn, prefix = _connection(base, timeout)
    try:
        all_headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": USER_AGENT}
        all_headers.update(headers)
        conn.request(method, prefix + path, body=body, headers=all_headers)
        res = conn.getresponse()
        text = res.read().decode("utf-8", errors="replace")
        return res.status, text, {k.lower(): v for k, v in res.getheaders()}
    finally:
        conn.close()


def post_batch(base: str, api_key: str, body: bytes, headers: Mapping[str, str], count: int, timeout: float) -> Outcome:
    try:
        status, text, res_headers = request(base, api_key, "POST", "/v1/events", body, headers, timeout)
    except (OSError, http.client.HTTPException) as err:
        # Refused, reset, closed mid-answer, timed out: Tally may or may not have committed; the same ids go again.
        return Outcome("retry", 0, "network", f"{type(err).__name__}: {err}")
    return classify(status, text, res_headers.get("retry-after"), count)


def segment(value: str) -> str:
    return quote(value, safe="")


def query_string(query: Mapping[str, Any]) -> str:
    pairs = []
    for k, v in query.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            for dim, values in v.items():
                for one in values if isinstance(values, (list, tuple)) else [values]:
                    pairs.append((f"{k}[{dim}]", str(one)))
        else:
            pairs.append((k, str(v)))
    return f"?{urlencode(pairs)}" if pairs else ""


def get(base: str, api_key: str, path: str, timeout: float, query: Optional[Mapping[str, Any]] = None) -> Tuple[int, Any, Dict[str, str]]:
    """A GET: (status, parsed JSON or None, headers); raises TallyApiError when Tally cannot be reached."""
    try:
        status, text, headers = request(base, api_key, "GET", path + query_string(query or {}), None, {}, timeout)
    except (OSError, http.client.HTTPException) as err:
        raise TallyApiError(f"Tally did not answer GET {path}: {err}", 0, None) from err
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return status, parsed, headers


def expect_ok(path: str, status: int, body: Any) -> Any:
    if 200 <= status < 300:
        return body
    problem = body if isinstance(body, dict) else None
    code = (problem or {}).get("code", "")
    detail = (problem or {}).get("detail", "")
    raise TallyApiError(f"GET {path}: {status} {code} {detail}".strip(), status, problem)
