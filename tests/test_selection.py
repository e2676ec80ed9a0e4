"""Provider selection: header, body field, model prefix, config-file model table, PROVIDER_NAME."""
import openai
import pytest

from tests.fakes.openai_upstream import start as start_openai_fake
from tests.gateway import Gateway

HI = [{"role": "user", "content": "hi there"}]

CONFIG = """
default_provider = "openai"

[providers.local]
type = "openai"
base_url = "{local}/v1"
api_key_env = "LOCAL_LLM_KEY"
models = ["llama-local", "qwen-local"]
default_model = "llama-local"

[providers.local.aliases]
fast = "qwen-local"

[providers.nokey]
type = "openai"
base_url = "{local}/v1"

[models]
"house-model" = {{ provider = "local", model = "llama-local" }}
"team-echo" = "echo"
"""


@pytest.fixture(scope="module")
def local_fake():
    server = start_openai_fake()
    yield server
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(openai_fake, local_fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("selection")
    config = tmp / "gateway.toml"
    config.write_text(CONFIG.format(local=local_fake.url))
    gateway = Gateway({"GATEWAY_CONFIG": str(config), "PROVIDER_NAME": "openai",
                       "OPENAI_API_KEY": "sk-openai-secret-0123456789",
                       "OPENAI_BASE_URL": openai_fake.url + "/v1",
                       "LOCAL_LLM_KEY": "local-secret-abcdef"}).start(tmp)
    yield gateway
    gateway.stop()


def client(gw, **headers):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, default_headers=headers)


def sent_to(fake, before: int):
    return fake.requests[before:]


def test_every_rule_in_order(gw, openai_fake, local_fake):
    c = client(gw)
    n_openai, n_local = len(openai_fake.requests), len(local_fake.requests)

    # PROVIDER_NAME (env wins over the file's default_provider)
    c.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert openai_fake.requests[-1].json()["model"] == "gpt-4o-mini"

    # the config file's model table, with the upstream model id it names
    c.chat.completions.create(model="house-model", messages=HI)
    assert local_fake.requests[-1].json()["model"] == "llama-local"
    assert c.chat.completions.create(model="team-echo", messages=HI).choices[0].message.content == "hi there"

    # an alias of a configured provider
    c.chat.completions.create(model="fast", messages=HI)
    assert local_fake.requests[-1].json()["model"] == "qwen-local"

    # a model prefix naming a configured provider
    c.chat.completions.create(model="local/qwen-local", messages=HI)
    assert local_fake.requests[-1].json()["model"] == "qwen-local"
    assert c.chat.completions.create(model="echo/anything", messages=HI).model == "anything"

    # the body field, stripped before forwarding
    c.chat.completions.create(model="llama-local", messages=HI, extra_body={"provider": "local"})
    assert "provider" not in local_fake.requests[-1].json()

    # the header beats everything
    reply = client(gw, **{"X-Provider": "echo"}).chat.completions.create(
        model="house-model", messages=HI, extra_body={"provider": "local"})
    assert reply.choices[0].message.content == "hi there"

    assert len(openai_fake.requests) == n_openai + 1
    assert len(local_fake.requests) == n_local + 4


def test_keys_go_only_where_they_belong(gw, openai_fake, local_fake):
    c = client(gw)
    c.chat.completions.create(model="local/llama-local", messages=HI)
    assert local_fake.requests[-1].headers["authorization"] == "Bearer local-secret-abcdef"
    c.chat.completions.create(model="nokey/llama", messages=HI)
    assert "authorization" not in local_fake.requests[-1].headers  # never the OpenAI key
    c.chat.completions.create(model="gpt-4o", messages=HI)
    assert openai_fake.requests[-1].headers["authorization"] == "Bearer sk-openai-secret-0123456789"


def test_a_provider_with_listed_models_refuses_others(gw):
    with pytest.raises(openai.NotFoundError) as info:
        client(gw).chat.completions.create(model="local/gpt-99", messages=HI)
    assert "llama-local" in info.value.body["message"] and info.value.body["code"] == "model_not_found"


def test_unknown_prefix_falls_through_to_the_default(gw, openai_fake):
    # "meta-llama/x" names no provider, so it is a model id for the default provider
    client(gw).chat.completions.create(model="meta-llama/llama-3", messages=HI)
    assert openai_fake.requests[-1].json()["model"] == "meta-llama/llama-3"


def test_models_and_providers_list_the_config(gw):
    import requests
    providers = requests.get(gw.url + "/v1/providers", timeout=5).json()
    assert providers["default"] == "openai"
    local = next(p for p in providers["providers"] if p["name"] == "local")
    assert local["available"] and local["default_model"] == "llama-local"
    ids = {(m["provider"], m["id"]) for m in requests.get(gw.url + "/v1/models", timeout=5).json()["data"]}
    assert {("local", "llama-local"), ("local", "fast"), ("openai", "gpt-4o"), ("echo", "echo")} <= ids
    assert "local-secret" not in str(providers)
