"""relevo's Python SDK: the HTTP API as typed calls, blocking (``Client``) or asyncio
(``AsyncClient``).

    from relevo.client import Client, NotFound

    with Client("http://127.0.0.1:8000", api_key="rlv_...") as relevo:
        relevo.add_items([{"id": "alien", "title": "Alien (1979)", "tags": ["Horror"]}])
        relevo.send_events([{"user_id": "ana", "item_id": "alien", "type": "purchase"}])
        rec = relevo.recommend("ana", n=5, filters={"tags": ["Horror"]})
        relevo.feedback(rec.decision_id, rec.items[0].item_id, reward=1.0)

Results are typed records (``Recommendation`` and ``ErasureReceipt`` are the engine's own,
from ``relevo.records``; ``FeedbackResult``, ``AppendResult``, ``Consent`` are frozen
dataclasses) or, for documents, JSON dicts; errors are
``RelevoAPIError`` subclasses, one per status. Retries (exponential backoff with jitter,
``Retry-After`` honoured) are made only where a retry cannot act twice; events without an
``id`` get a uuid4 hex one in the client, so a retried ``send_events`` is deduplicated by
the server. ``client.event_batcher()`` batches events by size and time.
"""

from relevo.client._async import AsyncClient, AsyncExperiments, AsyncPersonalizer
from relevo.client._batch import AsyncEventBatcher, EventBatcher
from relevo.client._calls import MAX_BATCH
from relevo.client._errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RelevoAPIError,
    ServerError,
    Unauthorized,
)
from relevo.client._models import (
    AppendResult,
    BatchResult,
    Consent,
    ErasureReceipt,
    FeedbackResult,
    Recommendation,
    ScoredItem,
)
from relevo.client._retry import RetryPolicy
from relevo.client._sync import Client, Experiments, Personalizer

__all__ = [
    "MAX_BATCH", "AppendResult", "AsyncClient", "AsyncEventBatcher", "AsyncExperiments", "AsyncPersonalizer",
    "BadRequest", "BatchResult", "Client", "Conflict", "ConnectionFailed", "Consent", "ErasureReceipt",
    "EventBatcher", "Experiments", "FeedbackResult", "Forbidden", "NotFound", "PayloadTooLarge", "Personalizer",
    "RateLimited", "Recommendation", "RelevoAPIError", "RetryPolicy", "ScoredItem", "ServerError", "Unauthorized",
]
