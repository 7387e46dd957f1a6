"""The models API in both dialects, and the gateway's front door.

``GET /v1/models`` and ``GET /v1/models/{id}`` answer in OpenAI's shape (with a
``cortex`` object of fleet state), or in Anthropic's (``type: "model"``,
``display_name``, ``created_at``, ``has_more`` / ``first_id`` / ``last_id``, with
``limit`` / ``after_id`` / ``before_id`` paging) when the request carries
``anthropic-version``, as the anthropic SDKs' ``models.list`` / ``models.retrieve`` do.
A model name that an alias resolves is found too. ``GET /`` and ``HEAD /`` answer 200
with a short description (Claude Code sends ``HEAD /`` when it starts).
"""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Request, Response, get, head

from cortex.common import anthropic as a
from cortex.common.errors import CortexError
from cortex.common.openai import ModelCard, ModelList
from cortex.services.gateway.auth import require_client

ABOUT = {
    "name": "cortex-gateway",
    "description": "One OpenAI and Anthropic compatible API for a fleet of local LLMs.",
    "endpoints": [
        "GET /v1/models",
        "GET /v1/models/{id}",
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/messages",
        "POST /v1/messages/count_tokens",
        "GET /fleet",
        "GET /health",
    ],
}


def speaks_anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


@get("/", sync_to_thread=False)
def about() -> dict:
    return ABOUT


@head("/", sync_to_thread=False)
def about_head() -> None:
    return None


@get("/v1/models", sync_to_thread=False)
def list_models(request: Request) -> Response:
    require_client(request)
    cards = model_cards(request.app.state.gateway)
    if speaks_anthropic(request):
        return Response(content=_anthropic_page(request, cards), media_type="application/json")
    return Response(content=ModelList(data=cards), media_type="application/json")


@get("/v1/models/{model_id:path}", sync_to_thread=False)
def retrieve_model(request: Request, model_id: str) -> Response:
    require_client(request)
    card = find_card(request.app.state.gateway, model_id.lstrip("/"))
    content = _anthropic_info(card) if speaks_anthropic(request) else card
    return Response(content=content, media_type="application/json")


def find_card(gateway, name: str) -> ModelCard:
    """The card for ``name``: a model of the fleet, or an alias (exact or glob) of one."""
    cards = model_cards(gateway)
    for card in cards:
        if card.id == name:
            return card
    scheduler = gateway.scheduler
    target = scheduler.resolve(name)
    if target != name and scheduler.model_known(target):
        return ModelCard(id=name, cortex={"state": "alias", "alias_of": target})
    raise scheduler.unknown_model_error(name, param="model")


def model_cards(gateway) -> list[ModelCard]:
    scheduler = gateway.scheduler
    cards = []
    for entry in scheduler.catalogue():
        records = scheduler.placements_of(entry.id)
        up = {n for n, v in scheduler.neurons.items() if v.up}
        loaded_on = [r.neuron for r in records if r.state == "loaded" and r.neuron in up]
        loading = [r for r in records if r.state == "loading" and r.neuron in up]
        available_up = [n for n in entry.available_on if n in up]
        if loaded_on:
            state = "loaded"
        elif loading:
            state = "loading"
        elif available_up:
            state = "available"
        else:
            state = "unavailable"
        extra: dict = {
            "state": state,
            "loaded_on": loaded_on,
            "available_on": entry.available_on,
            "pinned": entry.pinned,
        }
        if loading:
            extra["loading_on"] = [r.neuron for r in loading]
            progress = loading[0].progress
            extra["progress"] = progress.fraction if progress is not None else 0.0
        if entry.memory_estimate is not None:
            extra["memory_estimate"] = entry.memory_estimate
        if entry.max_seq_len is not None:
            extra["max_seq_len"] = entry.max_seq_len
        created = min((int(r.loaded_at) for r in records if r.loaded_at), default=0)
        cards.append(ModelCard(id=entry.id, created=created, cortex=extra))
    for alias, target in gateway.settings.config.aliases.items():
        if not any(ch in alias for ch in "*?[") and not scheduler.model_known(alias):
            cards.append(ModelCard(id=alias, cortex={"state": "alias", "alias_of": target}))
    return cards


def _anthropic_info(card: ModelCard) -> a.ModelInfo:
    created = datetime.fromtimestamp(card.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return a.ModelInfo(id=card.id, display_name=card.id, created_at=created)


def _anthropic_page(request: Request, cards: list[ModelCard]) -> a.ModelInfoList:
    """One page as Anthropic pages: ``after_id`` / ``before_id`` cursors, ``limit`` 1-1000."""
    params = request.query_params
    ids = [card.id for card in cards]
    try:
        limit = int(params.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise CortexError(400, "limit: must be an integer from 1 to 1000.", param="limit")
    start, end = 0, len(cards)
    for key in ("after_id", "before_id"):
        cursor = params.get(key)
        if cursor is None:
            continue
        if cursor not in ids:
            raise CortexError(400, f"{key}: no model {cursor!r} in the list.", param=key)
        if key == "after_id":
            start = ids.index(cursor) + 1
        else:
            end = ids.index(cursor)
    if "before_id" in params and "after_id" not in params:
        start = max(start, end - limit)
        page, has_more = cards[start:end], start > 0
    else:
        page, has_more = cards[start : start + limit], start + limit < end
    data = [_anthropic_info(card) for card in page]
    return a.ModelInfoList(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
