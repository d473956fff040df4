"""``Client``: the blocking SDK over ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

import httpx

from relevo import __version__
from relevo.client import _calls as api
from relevo.client._batch import EventBatcher
from relevo.client._calls import Call, EventLike, ItemLike
from relevo.client._errors import ConnectionFailed, ServerError, error_from_response
from relevo.client._models import AppendResult, Consent, ErasureReceipt, FeedbackResult, Recommendation
from relevo.client._retry import RetryPolicy
from relevo.records import Item

T = TypeVar("T")
Tier = Literal["auto", "edge", "streaming", "origin"]
JSON_BODY = {"Content-Type": "application/json"}


def client_headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": f"relevo-python/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class Client:
    """The relevo HTTP API from Python.

    ``Client("http://127.0.0.1:8000", api_key)`` sends the key as ``Authorization: Bearer``;
    ``timeout`` is seconds per request (or an ``httpx.Timeout``); ``retries`` and
    ``backoff`` drive the retries (``relevo.client._retry``: only where a retry cannot act
    twice); ``transport`` replaces httpx's (tests, proxies, ``httpx.MockTransport``).
    Every error is a ``RelevoAPIError`` subclass. Use it as a context manager, or ``close()``.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float | httpx.Timeout = 10.0,
                 retries: int = 3, backoff: float = 0.2, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy(retries=retries, backoff=backoff)
        self._http = httpx.Client(base_url=self.base_url, headers=client_headers(api_key), timeout=timeout,
                                  transport=transport)
        self._sleep = time.sleep
        self.experiments = Experiments(self)
        self.personalizer = Personalizer(self)

    # -- plumbing ------------------------------------------------------------------------

    def send(self, call: Call[T]) -> T:
        """Execute one ``Call`` with the retry policy; its parsed answer or a typed error."""
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, content=call.body, params=call.params,
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
            self._sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- items and events ----------------------------------------------------------------

    def add_items(self, items: Iterable[ItemLike]) -> int:
        """Add or replace up to 1,000 items (``Item`` records or dicts); the number accepted.
        They are recommendable when this returns."""
        return self.send(api.add_items(items))

    def get_item(self, item_id: str) -> Item:
        return self.send(api.get_item(item_id))

    def delete_item(self, item_id: str) -> None:
        self.send(api.delete_item(item_id))

    def send_events(self, events: Iterable[EventLike]) -> AppendResult:
        """Append up to 1,000 events (``Event`` records or dicts) in one all-or-nothing request.
        An event without an ``id`` gets a uuid4 hex one here, so a retried request is
        deduplicated by the server (counted in ``duplicates``), never appended twice."""
        return self.send(api.send_events(events))

    def event_batcher(self, max_batch: int = api.MAX_BATCH, max_delay_s: float = 0.5) -> EventBatcher:
        """A context manager that buffers events and sends them ``max_batch`` at a time, or
        when the oldest buffered event has waited ``max_delay_s``, and on exit."""
        return EventBatcher(self, max_batch, max_delay_s)

    # -- recommendations -----------------------------------------------------------------

    def recommend(self, user_id: str, n: int = 10, *, context: Mapping[str, Any] | None = None,
                  filters: Mapping[str, Any] | None = None, explain: bool = False, tier: Tier = "auto",
                  non_profiled: bool = False, budget_ms: float | None = None) -> Recommendation:
        """A logged decision of ``n`` items. ``filters``: ``tags`` (any of), ``exclude_tags``,
        ``exclude_ids``, ``<attribute>: value or [any of]``; ``non_profiled`` answers without
        the user's history; ``budget_ms`` is the deadline (the answer's ``tier`` and
        ``degraded`` say what fitted). Not retried once the request may have reached the server."""
        return self.send(api.recommend(user_id, n, context, filters, explain, tier, non_profiled, budget_ms))

    def popular(self, n: int = 100) -> list[dict[str, Any]]:
        """``[{"item_id", "score"}]``: the most engaged-with items."""
        return self.send(api.popular(n))

    def feedback(self, decision_id: str, item_id: str, reward: float) -> FeedbackResult:
        """Reward an item of a decision; the first reward of each item wins."""
        return self.send(api.feedback(decision_id, item_id, reward))

    def audit(self, decision_id: str) -> dict[str, Any]:
        """The decision's audit record: policy, versions, feature names, propensities, consent."""
        return self.send(api.audit(decision_id))

    # -- users ---------------------------------------------------------------------------

    def put_preferences(self, user_id: str, preferences: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the user's stated preferences (``liked_tags``, ``disliked_tags``, free keys)."""
        return self.send(api.put_preferences(user_id, preferences))

    def get_preferences(self, user_id: str) -> dict[str, Any]:
        return self.send(api.get_preferences(user_id))

    def describe_preferences(self, user_id: str, text: str, *, budget_ms: float | None = None) -> dict[str, Any]:
        """Natural-language preferences -> tags (and a first taste vector for a new user);
        ``source`` says whether the LLM or the keyword fallback read them."""
        return self.send(api.describe_preferences(user_id, text, budget_ms))

    def put_consent(self, user_id: str, *, personalization: bool | None = None, profiling: bool | None = None,
                    emotion: bool | None = None, llm: bool | None = None) -> Consent:
        """Grant (True) or withdraw (False) purposes; None leaves a purpose unchanged."""
        purposes = {"personalization": personalization, "profiling": profiling, "emotion": emotion, "llm": llm}
        return self.send(api.put_consent(user_id, {k: v for k, v in purposes.items() if v is not None}))

    def get_consent(self, user_id: str) -> Consent:
        return self.send(api.get_consent(user_id))

    def erase_user(self, user_id: str) -> ErasureReceipt:
        """Remove the user from every store (needs the ``erase`` scope)."""
        return self.send(api.erase_user(user_id))

    def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything stored about the user (GDPR Art. 15/20)."""
        return self.send(api.export_user(user_id))

    def user_decisions(self, user_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """Audit records of the user's latest decisions (``limit`` at most 1,000)."""
        return self.send(api.user_decisions(user_id, limit))

    # -- operations ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return self.send(api.stats())

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"}`` (needs no key)."""
        return self.send(api.health())

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        return self.send(api.metrics())


class Experiments:
    """``client.experiments``: A/B tests over recommendations (JSON documents in and out)."""

    def __init__(self, client: Client):
        self._client = client

    def create(self, design: Mapping[str, Any]) -> dict[str, Any]:
        """``{"id", "variants": [{"name", "weight"?, "config"?}], "allocation"?, "guardrails"?}``;
        ``Conflict`` when the id exists or another experiment runs."""
        return self._client.send(api.create_experiment(design))

    def get(self, experiment_id: str) -> dict[str, Any]:
        return self._client.send(api.get_experiment(experiment_id))

    def results(self, experiment_id: str) -> dict[str, Any]:
        return self._client.send(api.experiment_results(experiment_id))

    def stop(self, experiment_id: str) -> dict[str, Any]:
        return self._client.send(api.stop_experiment(experiment_id))


class Personalizer:
    """``client.personalizer``: the Azure Personalizer v1.0-compatible routes, taking and
    returning Personalizer's JSON shapes unchanged."""

    def __init__(self, client: Client):
        self._client = client

    def rank(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``{"contextFeatures", "actions", "excludedActions"?, "eventId"?, "deferActivation"?}``
        -> ``{"eventId", "ranking": [{"id", "probability"}], "rewardActionId"}``."""
        return self._client.send(api.rank(request))

    def reward(self, event_id: str, value: float) -> None:
        self._client.send(api.reward(event_id, value))

    def activate(self, event_id: str) -> None:
        self._client.send(api.activate(event_id))

    def multislot_rank(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self._client.send(api.multislot_rank(request))

    def multislot_reward(self, event_id: str, rewards: Mapping[str, float] | Iterable[Mapping[str, Any]]) -> None:
        """``rewards``: ``{slot_id: value}`` or Personalizer's ``[{"slotId", "value"}]``."""
        self._client.send(api.multislot_reward(event_id, rewards))

    def multislot_activate(self, event_id: str) -> None:
        self._client.send(api.multislot_activate(event_id))

    def get_configuration(self) -> dict[str, Any]:
        return self._client.send(api.get_configuration())

    def put_configuration(self, configuration: Mapping[str, Any]) -> dict[str, Any]:
        """``{"learningMode": "Online" | "Apprentice"}``; the configuration in force."""
        return self._client.send(api.put_configuration(configuration))

    def evaluate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``{"name", "startTime"?, "endTime"?, "policies"?: [{"name", "arguments"}]}``."""
        return self._client.send(api.evaluate(request))

    def get_evaluation(self, evaluation_id: str) -> dict[str, Any]:
        return self._client.send(api.get_evaluation(evaluation_id))
