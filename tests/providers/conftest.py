import openai
import pytest


@pytest.fixture(scope="module")
def client(gw):
    """The openai SDK pointed at the module's gateway; closed afterwards, so no idle
    keep-alive connection delays the gateway's shutdown."""
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0) as sdk:
        yield sdk
