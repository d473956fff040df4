"""``AsyncClient``: the SDK over ``httpx.AsyncClient``, the same methods as ``Client``
awaited (documented there)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import httpx

from relevo.client import _calls as api
from relevo.client._batch import AsyncEventBatcher
from relevo.client._calls import Call, EventLike, ItemLike
from relevo.client._errors import ConnectionFailed, ServerError, error_from_response
from relevo.client._models import AppendResult, Consent, ErasureReceipt, FeedbackResult, Recommendation
from relevo.client._retry import RetryPolicy
from relevo.client._sync import JSON_BODY, Tier, client_headers
from relevo.records import Item

T = TypeVar("T")


class AsyncClient:
    """``Client``'s methods, awaited: ``async with AsyncClient(url, key) as client:``.
    ``transport`` is an ``httpx.AsyncBaseTransport``; ``event_batcher`` an ``AsyncEventBatcher``."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float | httpx.Timeout = 10.0,
                 retries: int = 3, backoff: float = 0.2, transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy(retries=retries, backoff=backoff)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=client_headers(api_key),
                                       timeout=timeout, transport=transport)
        self._sleep = asyncio.sleep
        self.experiments = AsyncExperiments(self)
        self.personalizer = AsyncPersonalizer(self)

    # -- plumbing ------------------------------------------------------------------------

    async def send(self, call: Call[T]) -> T:
        """Execute one ``Call`` with the retry policy; its parsed answer or a typed error."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, content=call.body,
                                                    params=call.params,
                                                    headers=JSON_BODY if call.body is not None else None)
            except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
                delay = self.retry.after_error(exc, call.idempotent, attempt)
                if delay is None:
                    raise ConnectionFailed(f"{call.method} {call.path}: {type(exc).__name__}: {exc}",
                                           attempts=attempt + 1) from exc
            else:
                if response.is_success:
                    try:
                        return call.parse(response)
                    except Exception as exc:  # a 2xx that is not the documented JSON
                        raise ServerError(response.status_code, "unparseable_response",
                                          f"{call.method} {call.path}: {type(exc).__name__}: {exc}",
                                          attempts=attempt + 1) from exc
                delay = self.retry.after_response(response, call.idempotent, attempt)
                if delay is None:
                    raise error_from_response(response, attempts=attempt + 1)
            await self._sleep(delay)
            attempt += 1

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- items and events ----------------------------------------------------------------

    async def add_items(self, items: Iterable[ItemLike]) -> int:
        return await self.send(api.add_items(items))

    async def get_item(self, item_id: str) -> Item:
        return await self.send(api.get_item(item_id))

    async def delete_item(self, item_id: str) -> None:
        await self.send(api.delete_item(item_id))

    async def send_events(self, events: Iterable[EventLike]) -> AppendResult:
        return await self.send(api.send_events(events))

    def event_batcher(self, max_batch: int = api.MAX_BATCH, max_delay_s: float = 0.5) -> AsyncEventBatcher:
        return AsyncEventBatcher(self, max_batch, max_delay_s)

    # -- recommendations -----------------------------------------------------------------

    async def recommend(self, user_id: str, n: int = 10, *, context: Mapping[str, Any] | None = None,
                  filters: Mapping[str, Any] | None = None, explain: bool = False, tier: Tier = "auto",
                  non_profiled: bool = False, budget_ms: float | None = None) -> Recommendation:
        return await self.send(api.recommend(user_id, n, context, filters, explain, tier, non_profiled, budget_ms))

    async def popular(self, n: int = 100) -> list[dict[str, Any]]:
        return await self.send(api.popular(n))

    async def feedback(self, decision_id: str, item_id: str, reward: float) -> FeedbackResult:
        return await self.send(api.feedback(decision_id, item_id, reward))

    async def audit(self, decision_id: str) -> dict[str, Any]:
        return await self.send(api.audit(decision_id))

    # -- users ---------------------------------------------------------------------------

    async def put_preferences(self, user_id: str, preferences: Mapping[str, Any]) -> dict[str, Any]:
        return await self.send(api.put_preferences(user_id, preferences))

    async def get_preferences(self, user_id: str) -> dict[str, Any]:
        return await self.send(api.get_preferences(user_id))

    async def describe_preferences(self, user_id: str, text: str, *, budget_ms: float | None = None) -> dict[str, Any]:
        return await self.send(api.describe_preferences(user_id, text, budget_ms))

    async def put_consent(self, user_id: str, *, personalization: bool | None = None, profiling: bool | None = None,
                    emotion: bool | None = None, llm: bool | None = None) -> Consent:
        purposes = {"personalization": personalization, "profiling": profiling, "emotion": emotion, "llm": llm}
        return await self.send(api.put_consent(user_id, {k: v for k, v in purposes.items() if v is not None}))

    async def get_consent(self, user_id: str) -> Consent:
        return await self.send(api.get_consent(user_id))

    async def erase_user(self, user_id: str) -> ErasureReceipt:
        return await self.send(api.erase_user(user_id))

    async def export_user(self, user_id: str) -> dict[str, Any]:
        return await self.send(api.export_user(user_id))

    async def user_decisions(self, user_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return await self.send(api.user_decisions(user_id, limit))

    # -- operations ----------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        return await self.send(api.stats())

    async def health(self) -> dict[str, Any]:
        return await self.send(api.health())

    async def metrics(self) -> str:
        return await self.send(api.metrics())


class AsyncExperiments:
    """``client.experiments``: A/B tests over recommendations (JSON documents in and out)."""

    def __init__(self, client: AsyncClient):
        self._client = client

    async def create(self, design: Mapping[str, Any]) -> dict[str, Any]:
        return await self._client.send(api.create_experiment(design))

    async def get(self, experiment_id: str) -> dict[str, Any]:
        return await self._client.send(api.get_experiment(experiment_id))

    async def results(self, experiment_id: str) -> dict[str, Any]:
        return await self._client.send(api.experiment_results(experiment_id))

    async def stop(self, experiment_id: str) -> dict[str, Any]:
        return await self._client.send(api.stop_experiment(experiment_id))


class AsyncPersonalizer:
    """``client.personalizer``: the Azure Personalizer v1.0-compatible routes, taking and
    returning Personalizer's JSON shapes unchanged."""

    def __init__(self, client: AsyncClient):
        self._client = client

    async def rank(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return await self._client.send(api.rank(request))

    async def reward(self, event_id: str, value: float) -> None:
        await self._client.send(api.reward(event_id, value))

    async def activate(self, event_id: str) -> None:
        await self._client.send(api.activate(event_id))

    async def multislot_rank(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return await self._client.send(api.multislot_rank(request))

    async def multislot_reward(self, event_id: str,
                               rewards: Mapping[str, float] | Iterable[Mapping[str, Any]]) -> None:
        await self._client.send(api.multislot_reward(event_id, rewards))

    async def multislot_activate(self, event_id: str) -> None:
        await self._client.send(api.multislot_activate(event_id))

    async def get_configuration(self) -> dict[str, Any]:
        return await self._client.send(api.get_configuration())

    async def put_configuration(self, configuration: Mapping[str, Any]) -> dict[str, Any]:
        return await self._client.send(api.put_configuration(configuration))

    async def evaluate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return await self._client.send(api.evaluate(request))

    async def get_evaluation(self, evaluation_id: str) -> dict[str, Any]:
        return await self._client.send(api.get_evaluation(evaluation_id))
