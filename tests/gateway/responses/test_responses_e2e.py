"""The Responses API end to end: a real CPU neuron with demo-tiny, a real gateway, the
official openai SDK and the OpenAI Agents SDK.

The tests share one fleet (module scope) and run in file order; the restart test starts
a second gateway on the same work folder (the same responses database).
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Literal

import agents
import httpx
import openai
import pydantic
import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class Forecast(pydantic.BaseModel):
    sky: Literal["sunny", "rainy"]


COMPLETES = "Yes?"  # greedy demo-tiny ends its answer within 64 tokens


@pytest.fixture(scope="module")
def fleet(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("responses-fleet")
    with (
        start_neuron(demo_models.root, root / "neuron", settings={"name": "a"}) as neuron,
        start_gateway(
            root / "gateway",
            neurons={"a": neuron.url},
            config={"aliases": {"gpt-*": "demo-tiny"}},
        ) as gateway,
    ):
        gateway.wait_neurons_up()
        yield type("Fleet", (), {"neuron": neuron, "gateway": gateway, "root": root})


@pytest.fixture(scope="module")
def oai(fleet):
    return openai.OpenAI(base_url=fleet.gateway.url + "/v1", api_key="unused", max_retries=0)


def test_create_answers_a_stored_response_in_openais_shape(fleet, oai):
    response = oai.responses.create(
        model="gpt-5-mini",  # an alias of demo-tiny
        instructions="Be brief.",
        input="Say hello",
        max_output_tokens=12,
        temperature=0,
        metadata={"case": "create"},
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.model == "gpt-5-mini"
    assert response.status in ("completed", "incomplete")
    message = response.output[-1]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text"
    assert response.output_text == message.content[0].text
    usage = response.usage
    assert usage.input_tokens > 0 and 0 < usage.output_tokens <= 12
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens >= 0
    assert response.metadata == {"case": "create"} and response.instructions == "Be brief."
    # Stored by default: retrievable, with its input items.
    again = oai.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()
    items = oai.responses.input_items.list(response.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [
        ("message", "user", "Say hello")
    ]
    assert items.data[0].id.startswith("msg_")


def test_input_items_are_listed_in_pages(fleet, oai):
    said = ["one", "two", "three"]
    response = oai.responses.create(
        model="demo-tiny",
        input=[{"role": "user", "content": text} for text in said],
        max_output_tokens=2,
    )
    page = oai.responses.input_items.list(response.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["one", "two"] and page.has_more
    assert page.first_id == page.data[0].id and page.last_id == page.data[1].id
    rest = oai.responses.input_items.list(response.id, order="asc", after=page.last_id)
    assert [i.content[0].text for i in rest.data] == ["three"] and not rest.has_more
    newest = oai.responses.input_items.list(response.id, limit=1)  # desc by default
    assert newest.data[0].content[0].text == "three"


def test_max_output_tokens_makes_an_incomplete_response(fleet, oai):
    response = oai.responses.create(
        model="demo-tiny",
        input="Tell a long story",
        max_output_tokens=3,
        temperature=0,  # greedy: this prompt gets more than 3 tokens from demo-tiny
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[-1].status == "incomplete"


def test_stream_events_come_in_openais_order_and_match_the_final_response(fleet, oai):
    # Greedy demo-tiny ends its answer to this prompt after 53 tokens: the SDK's stream
    # helper needs a response.completed.
    with oai.responses.stream(
        model="demo-tiny", input=COMPLETES, max_output_tokens=64, temperature=0
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and deltas == final.output_text
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    assert oai.responses.retrieve(final.id).output_text == final.output_text


def test_function_call_then_its_output_continues_the_conversation(fleet, oai):
    first = oai.responses.create(
        model="demo-tiny",
        input=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER, {"type": "web_search"}],  # the built-in tool is dropped
        tool_choice="required",
        max_output_tokens=128,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].status == "completed"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    assert calls[0].call_id and calls[0].id.startswith("fc_")
    # The follow-up: history as items (no previous_response_id), with the tool's output.
    follow = oai.responses.create(
        model="demo-tiny",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
        ],
        tools=[WEATHER],
        max_output_tokens=8,
        temperature=0,
    )
    assert follow.status in ("completed", "incomplete")
    assert follow.usage.input_tokens > first.usage.input_tokens  # the call and output count
    # The same continuation by reference: the stored first response supplies the history.
    chained = oai.responses.create(
        model="demo-tiny",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
        tools=[WEATHER],
        max_output_tokens=8,
        temperature=0,
    )
    assert chained.usage.input_tokens == follow.usage.input_tokens
    assert chained.output_text == follow.output_text
    assert chained.previous_response_id == first.id


def test_named_function_and_streamed_arguments(fleet, oai):
    with oai.responses.stream(
        model="demo-tiny",
        input="Weather?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=128,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    call = next(item for item in final.output if item.type == "function_call")
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert pieces == done.arguments == call.arguments
    assert isinstance(json.loads(call.arguments), dict)


def test_json_schema_text_format_is_constrained(fleet, oai):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 8}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    response = oai.responses.create(
        model="demo-tiny",
        input="Answer in JSON",
        text={"format": {"type": "json_schema", "name": "reply", "schema": schema}},
        max_output_tokens=64,
    )
    assert set(json.loads(response.output_text)) == {"answer"}


def test_previous_response_id_chains_turns(fleet, oai):
    first = oai.responses.create(
        model="demo-tiny", input="My name is Ada.", max_output_tokens=4, temperature=0
    )
    second = oai.responses.create(
        model="demo-tiny",
        previous_response_id=first.id,
        input="What is my name?",
        max_output_tokens=4,
        temperature=0,
    )
    alone = oai.responses.create(
        model="demo-tiny", input="What is my name?", max_output_tokens=4, temperature=0
    )
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    items = oai.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["What is my name?"]


def test_store_false_is_not_kept(fleet, oai):
    response = oai.responses.create(
        model="demo-tiny", input="Hello", store=False, max_output_tokens=4
    )
    assert response.store is False
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.retrieve(response.id)
    assert response.id in caught.value.message
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="demo-tiny", previous_response_id=response.id, input="Hi")
    streamed = oai.responses.create(
        model="demo-tiny", input="Hello", store=False, max_output_tokens=4, stream=True
    )
    final = [e for e in streamed if e.type in ("response.completed", "response.incomplete")]
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(final[0].response.id)


def test_delete_removes_a_stored_response(fleet, oai):
    response = oai.responses.create(model="demo-tiny", input="Hello", max_output_tokens=4)
    deleted = oai.responses.delete(response.id)
    assert deleted is None  # the SDK returns nothing; the gateway answered 200
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.delete(response.id)


def test_errors_use_openais_envelope_and_name_the_field(fleet, oai):
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.create(model="no-such-model", input="Hi")
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="demo-tiny", input=[{"type": "function_call", "name": "x"}])
    assert caught.value.body["param"] == "input[0].call_id"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="demo-tiny", input="Hi", background=True)
    assert caught.value.body["param"] == "background"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(
            model="demo-tiny", input="Hi", tools=[{"type": "web_search"}], tool_choice="required"
        )
    assert "web_search" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="demo-tiny", input="word " * 5000, max_output_tokens=16)
    assert caught.value.body["code"] == "context_length_exceeded"
    assert caught.value.body["param"] == "input" and "max_output_tokens" in caught.value.message
    with pytest.raises(openai.BadRequestError) as streamed:
        oai.responses.create(model="demo-tiny", input="word " * 5000, stream=True)
    assert streamed.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.retrieve("resp_missing")
    assert caught.value.body["type"] == "not_found_error"
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="demo-tiny", input=[{"role": "user", "content": [image]}])
    assert "image" in caught.value.message  # the demo model cannot take images
    raw = httpx.post(fleet.gateway.url + "/v1/responses", content=b"{not json")
    assert raw.status_code == 400 and "error" in raw.json()
    stored = oai.responses.create(model="demo-tiny", input="Hi", max_output_tokens=2)
    raw = httpx.get(f"{fleet.gateway.url}/v1/responses/{stored.id}", params={"stream": "true"})
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "stream"
    raw = httpx.get(f"{fleet.gateway.url}/v1/responses/{stored.id}/input_items?limit=0")
    assert raw.status_code == 400 and "limit" in raw.json()["error"]["message"]


def test_metrics_and_log_count_the_responses_endpoint(fleet):
    metrics = fleet.gateway.metrics()
    assert 'endpoint="responses"' in metrics
    assert re.search(
        r"POST /v1/responses status=200 .* endpoint=responses ", fleet.gateway.log_text()
    )


def test_an_agents_sdk_agent_calls_a_function_tool_through_the_gateway(fleet):
    agents.set_tracing_disabled(True)
    asked: list[str] = []

    @agents.function_tool
    def get_weather(city: Literal["Paris", "Rome"]) -> str:
        """Current weather in a city."""
        asked.append(city)
        return f"{city}: sunny, 21 C"

    client = openai.AsyncOpenAI(base_url=fleet.gateway.url + "/v1", api_key="x", max_retries=0)
    agent = agents.Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model="demo-tiny", openai_client=client),
        # The first turn must call the tool; the SDK then resets the choice to auto. The
        # structured output (text.format json_schema, constrained) makes the random demo
        # model's final answer end within the token limit.
        model_settings=agents.ModelSettings(tool_choice="required", max_tokens=96),
        output_type=Forecast,
    )
    result = agents.Runner.run_sync(agent, "Weather in Paris?", max_turns=4)
    assert asked and asked[0] in ("Paris", "Rome")
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"]
    assert result.final_output.sky in ("sunny", "rainy")


def test_a_stored_response_survives_a_gateway_restart(fleet, tmp_path):
    work = tmp_path / "gateway"
    with start_gateway(work, neurons={"a": fleet.neuron.url}) as gateway:
        gateway.wait_neurons_up()
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        first = client.responses.create(
            model="demo-tiny", input="Remember: blue.", max_output_tokens=4, temperature=0
        )
    database = sqlite3.connect(work / "responses.sqlite3")
    assert database.execute(
        "SELECT COUNT(*) FROM responses WHERE id = ?", (first.id,)
    ).fetchone() == (1,)
    database.close()
    with start_gateway(work, neurons={"a": fleet.neuron.url}) as gateway:
        gateway.wait_neurons_up()
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        assert client.responses.retrieve(first.id).output_text == first.output_text
        second = client.responses.create(
            model="demo-tiny",
            previous_response_id=first.id,
            input="Which colour?",
            max_output_tokens=4,
            temperature=0,
        )
        alone = client.responses.create(
            model="demo-tiny", input="Which colour?", max_output_tokens=4, temperature=0
        )
        assert second.usage.input_tokens > alone.usage.input_tokens
