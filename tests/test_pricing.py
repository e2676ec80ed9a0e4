import pytest

from proxy.log.pricing import ModelPrice, Pricing


@pytest.fixture(scope="module")
def pricing():
    return Pricing.load()


def test_plain_cost(pricing):
    # gpt-4o-mini: 0.15 in, 0.60 out per 1M -> 1000*0.15e-6 + 500*0.60e-6
    assert pricing.cost("gpt-4o-mini", 1000, 500) == pytest.approx(0.00045)


def test_cached_tokens_priced_as_cached_and_not_again_as_input(pricing):
    # gpt-4o: 2.50 in, 1.25 cached, 10.00 out. 1000 prompt of which 400 cached.
    # 600*2.50e-6 + 400*1.25e-6 + 100*10e-6 = 0.0015 + 0.0005 + 0.001
    assert pricing.cost("gpt-4o", 1000, 100, cached_tokens=400) == pytest.approx(0.003)
    # not 1000*2.50e-6 + 400*1.25e-6 + 0.001 (= 0.004)


def test_anthropic_cache_reads(pricing):
    # claude-sonnet-4-5: 3.00 in, 0.30 cached, 15.00 out
    # 2000*3e-6 + 8000*0.3e-6 + 1000*15e-6 = 0.006 + 0.0024 + 0.015
    assert pricing.cost("claude-sonnet-4-5", 10_000, 1000, cached_tokens=8000) == pytest.approx(0.0234)


def test_cached_falls_back_to_input_without_cached_price(pricing):
    # gpt-3.5-turbo has no cached price: all 1000 prompt tokens at 0.50
    assert pricing.cost("gpt-3.5-turbo", 1000, 0, cached_tokens=600) == pytest.approx(0.0005)


def test_reasoning_tokens_default_to_output_price(pricing):
    # o4-mini: 1.10 in, 4.40 out; 300 of 1000 completion tokens are reasoning
    # 1000*1.10e-6 + 1000*4.40e-6 = 0.0011 + 0.0044
    assert pricing.cost("o4-mini", 1000, 1000, reasoning_tokens=300) == pytest.approx(0.0055)


def test_reasoning_priced_separately_when_listed():
    pricing = Pricing.load({"thinker": {"input": 1.0, "output": 2.0, "reasoning": 8.0}})
    # 1000*1e-6 + (1000-250)*2e-6 + 250*8e-6 = 0.001 + 0.0015 + 0.002
    assert pricing.cost("thinker", 1000, 1000, reasoning_tokens=250) == pytest.approx(0.0045)


def test_everything_at_once(pricing):
    # gpt-5: 1.25 in, 0.125 cached, 10 out (reasoning as output)
    # 7000*1.25e-6 + 3000*0.125e-6 + 2000*10e-6 = 0.00875 + 0.000375 + 0.02
    assert pricing.cost("gpt-5", 10_000, 2000, cached_tokens=3000,
                        reasoning_tokens=1500) == pytest.approx(0.029125)


def test_cached_clamped_to_prompt(pricing):
    # more cached than prompt tokens: never a negative uncached share
    assert pricing.cost("gpt-4o", 100, 0, cached_tokens=500) == pytest.approx(100 * 1.25e-6)


def test_rounded_to_ten_places(pricing):
    assert pricing.cost("gpt-5-nano", 1, 0) == 5e-8
    assert pricing.cost("gpt-4o-mini", 1000, 500) == 0.00045


def test_unknown_model_is_none_not_zero(pricing):
    assert pricing.price("no-such-model") is None
    assert pricing.cost("no-such-model", 1000, 1000) is None
    assert pricing.cost("", 10, 10) is None


def test_echo_is_free(pricing):
    assert pricing.cost("echo", 123_456, 7890, cached_tokens=100) == 0.0


@pytest.mark.parametrize("model, entry", [
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ("o1-preview-2024-09-12", "o1"),
    ("gpt-5-chat-latest", "gpt-5-chat"),
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
    ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),          # Vertex
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
    ("amazon.nova-micro-v1:0", "nova-micro"),
    ("eu.amazon.nova-pro-v1:0", "nova-pro"),
    ("us.meta.llama3-3-70b-instruct-v1:0", "llama3-3-70b-instruct"),
    ("mistral.mistral-large-2407-v1:0", "mistral-large-2407"),
    ("cohere.command-r-plus-v1:0", "cohere.command-r-plus"),         # Bedrock, not Cohere API
    ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),            # OpenRouter
    ("google/gemini-2.5-flash", "gemini-2.5-flash"),
    ("meta-llama/llama-3.3-70b-instruct", "meta-llama/llama-3.3-70b-instruct"),
    ("openrouter/anthropic/claude-3.7-sonnet:thinking", "claude-3-7-sonnet"),
    ("openai/gpt-4o-mini", "gpt-4o-mini"),                           # provider-prefixed
    ("azure/gpt-4o", "gpt-4o"),
    ("bedrock/us.amazon.nova-lite-v1:0", "nova-lite"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("GPT-4o", "gpt-4o"),
])
def test_normalisation(pricing, model, entry):
    assert pricing.resolve(model) == entry
    assert pricing.price(model) == pricing.price(entry)


def test_exact_match_wins_over_normalisation(pricing):
    # the first gpt-4o snapshot kept its launch price; stripping the date would be wrong
    assert pricing.resolve("gpt-4o-2024-05-13") == "gpt-4o-2024-05-13"
    assert pricing.price("gpt-4o-2024-05-13").input == 5.0
    assert pricing.price("gpt-4o-2024-08-06").input == 2.5


def test_no_false_friends(pricing):
    for model in ("gpt-4o-mini-tts", "gpt-4o-realtime-preview", "text-embedding-3-small",
                  "openai/unknown-model", "us.anthropic.claude-unknown-v1:0"):
        assert pricing.resolve(model) is None, model


def test_bedrock_and_openrouter_costs(pricing):
    # nova-micro: 0.035 in, 0.00875 cached, 0.14 out
    # 9000*0.035e-6 + 1000*0.00875e-6 + 1000*0.14e-6 = 0.000315 + 0.00000875 + 0.00014
    assert pricing.cost("us.amazon.nova-micro-v1:0", 10_000, 1000,
                        cached_tokens=1000) == pytest.approx(0.00046375)
    assert pricing.cost("anthropic/claude-sonnet-4.5", 1_000_000, 0) == pytest.approx(3.0)


def test_override_replaces_shipped_price_and_adds_model():
    pricing = Pricing.load({"gpt-4o": {"input": 2.0, "output": 8.0},
                            "my-finetune": {"input": 1.0, "cached_input": 0.5, "output": 4.0}})
    # fields named replace, the others (cached_input 1.25) are kept
    assert pricing.price("gpt-4o") == ModelPrice(input=2.0, output=8.0, cached_input=1.25)
    # 600*2e-6 + 400*1.25e-6 + 100*8e-6 = 0.0012 + 0.0005 + 0.0008
    assert pricing.cost("gpt-4o", 1000, 100, cached_tokens=400) == pytest.approx(0.0025)
    # normalised ids pick the override up too
    assert pricing.price("openai/gpt-4o-2024-11-20").input == 2.0
    # new model: 500*1e-6 + 500*0.5e-6 + 1000*4e-6 = 0.0005 + 0.00025 + 0.004
    assert pricing.cost("my-finetune", 1000, 1000, cached_tokens=500) == pytest.approx(0.00475)
    # the shipped table itself is untouched
    assert Pricing.load().price("gpt-4o").input == 2.5


def test_override_of_full_bedrock_id_wins():
    pricing = Pricing.load({"us.anthropic.claude-sonnet-4-5-20250929-v1:0":
                            {"input": 3.3, "cached_input": 0.33, "output": 16.5}})
    assert pricing.price("us.anthropic.claude-sonnet-4-5-20250929-v1:0").input == 3.3
    assert pricing.price("global.anthropic.claude-sonnet-4-5-20250929-v1:0").input == 3.0


@pytest.mark.parametrize("overrides", [
    {"new-model": {"input": 1.0}},                      # output missing
    {"gpt-4o": {"inptu": 1.0}},                         # typo
    {"gpt-4o": {"input": -1}},
    {"gpt-4o": {"input": "cheap"}},
    {"gpt-4o": 3.0},
])
def test_bad_overrides_rejected(overrides):
    with pytest.raises(ValueError):
        Pricing.load(overrides)


def test_shipped_table_is_sane(pricing):
    for name in pricing._prices:
        price = pricing.price(name)
        assert price.input >= 0 and price.output >= 0, name
        assert price.cached_rate <= price.input, name
