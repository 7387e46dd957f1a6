"""The stored-response database and its configuration, without HTTP."""

from __future__ import annotations

import time

import pytest

from cortex.common import responses as r
from cortex.common.config import ConfigError, GatewayConfig, decode_config
from cortex.services.gateway.responses import ResponseStore
from cortex.services.gateway.settings import Settings


def stored(response_id: str, text: str = "hi") -> r.StoredResponse:
    message = r.Message(id="msg_1", role="user", content=[r.InputText(text)], status="completed")
    response = r.Response(
        id=response_id, created_at=1, model="m", status="completed", output=[], tools=[]
    )
    return r.StoredResponse(response=response, input_items=[message], context=[message])


def test_a_response_is_kept_across_reopening_and_deleted_once(tmp_path):
    path = tmp_path / "state" / "responses.sqlite3"
    store = ResponseStore(path, max_age_s=3600, max_count=10)
    store.put(stored("resp_a", "first"))
    store.close()
    store = ResponseStore(path, max_age_s=3600, max_count=10)
    kept = store.get("resp_a")
    assert kept == stored("resp_a", "first")
    assert store.delete("resp_a") and not store.delete("resp_a")
    assert store.get("resp_a") is None
    store.close()


def test_retention_drops_the_oldest_beyond_the_count(tmp_path):
    store = ResponseStore(tmp_path / "db", max_age_s=3600, max_count=3)
    for n in range(5):
        store.put(stored(f"resp_{n}"))
    assert store.count() == 3
    assert store.get("resp_0") is None and store.get("resp_1") is None
    assert store.get("resp_4") is not None


def test_retention_by_age_hides_and_then_drops_old_rows(tmp_path):
    store = ResponseStore(tmp_path / "db", max_age_s=0.2, max_count=100)
    store.put(stored("resp_old"))
    time.sleep(0.3)
    assert store.get("resp_old") is None  # past its age, even before the next write
    store.put(stored("resp_new"))
    assert store.count() == 1 and store.get("resp_new") is not None


async def test_the_async_methods_run_off_the_event_loop(tmp_path):
    store = ResponseStore(tmp_path / "db", max_age_s=3600, max_count=10)
    await store.aput(stored("resp_x"))
    assert (await store.aget("resp_x")).response.id == "resp_x"
    assert await store.adelete("resp_x")


def test_responses_db_defaults_beside_the_state_file_and_resolves_from_cortex_toml(tmp_path):
    config = tmp_path / "cortex.toml"
    config.write_text('[gateway]\nstate_file = "state/gw.json"\n')
    assert Settings.load(config).responses_path == tmp_path / "state" / "responses.sqlite3"
    config.write_text('[gateway]\nresponses_db = "db/r.sqlite3"\nresponses_max_count = 5\n')
    settings = Settings.load(config)
    assert settings.responses_path == tmp_path / "db" / "r.sqlite3"
    assert settings.config.gateway.responses_max_count == 5


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[gateway]\nresponses_database = 'x'\n", "did you mean `responses_db`?"),
        ("[gateway]\nresponses_max_count = 0\n", "responses_max_count"),
        ("[gateway]\nresponses_max_age_days = -1\n", "responses_max_age_days"),
    ],
)
def test_bad_responses_keys_are_config_errors(text, words):
    with pytest.raises(ConfigError) as caught:
        decode_config(text, GatewayConfig, "cortex.toml")
    assert words in str(caught.value)
