"""tally_client: send usage events to Tally (batched, retried, each stored exactly once) and read usage, summaries,
invoices, credits and entitlements. `Tally` is the synchronous client (a background sender), `AsyncTally` the
asyncio one; both follow the rules of the TypeScript client, proven by the same conformance suite."""

from ._async import AsyncTally
from ._core import uuid7
from ._errors import BufferFull, ClientClosed, DeliveryError, EventProblem, Rejection, TallyApiError
from ._reads import Entitlement, EventReceipt, UsageBucket, UsageSeries
from ._sync import Tally

__all__ = [
    "AsyncTally",
    "BufferFull",
    "ClientClosed",
    "DeliveryError",
    "Entitlement",
    "EventProblem",
    "EventReceipt",
    "Rejection",
    "Tally",
    "TallyApiError",
    "UsageBucket",
    "UsageSeries",
    "uuid7",
]
__version__ = "0.1.0"
