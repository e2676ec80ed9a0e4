"""Provider types from SWITCHBOARD_PLUGINS: registered like the built-ins and called
end to end through the gateway with the openai SDK; a module that cannot be
imported stops the start with a message naming it."""
from __future__ import annotations

import openai
import pytest

from providers import registry

PLUGIN = "tests.plugins.house_provider"
HI = [{"role": "user", "content": "hi there"}]


@pytest.fixture
def house_config(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[providers.house]\ntype = "house"\nmodels = ["house-1"]\n'
                    'default_model = "house-1"\n\n[models]\n'
                    '"house-model" = { provider = "house", model = "house-1" }\n')
    return {"SWITCHBOARD_PLUGINS": PLUGIN, "GATEWAY_CONFIG": str(path)}


def test_a_plugin_provider_answers_through_the_gateway(start_gateway, house_config):
    gw = start_gateway(house_config)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="house/house-1", messages=HI)
    answer = raw.parse()
    assert answer.choices[0].message.content == "house: hi there"
    assert answer.choices[0].finish_reason == "stop" and answer.usage.total_tokens == 5
    assert raw.headers["x-gateway-provider"] == "house"
    stream = client.chat.completions.create(model="house-model", messages=HI, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "house: hi there"
    listed = {m.id: m.owned_by for m in client.models.list()}
    assert listed.get("house-1") == "house"


@pytest.mark.parametrize("plugins", ["tests.plugins.house_provder", "no_such_package.provider",
                                     f"{PLUGIN}, tests.plugins.missing"])
def test_a_misspelled_plugin_is_a_start_up_error(start_gateway, plugins):
    misspelled = plugins.split(",")[-1].strip()
    with pytest.raises(RuntimeError, match="gateway exited") as failed:
        start_gateway({"SWITCHBOARD_PLUGINS": plugins})
    assert f"SWITCHBOARD_PLUGINS names {misspelled!r}" in str(failed.value)


def test_a_misspelled_plugin_is_refused_by_the_registry():
    with pytest.raises(registry.PluginError, match="tests.plugins.house_provder"):
        registry.load(plugins="tests.plugins.house_provder")


def test_an_import_error_inside_a_plugin_names_the_plugin(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("import no_such_dependency_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(registry.PluginError, match="'broken_plugin'.*no_such_dependency"):
        registry.load(plugins="broken_plugin")
