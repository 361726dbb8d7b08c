"""Issue 7: the receipts service's Siteti webhook with a hostile signature header is a bad
signature (401), never a crash (the verifier is bridge.signing's, fixed there)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_receipts import (  # noqa: F401 (fixtures)
    app_settings,
    base_url,
    new_reference,
    post,
    webhook,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "signature",
    [
        "t=" + "9" * 309 + ",v1=00",  # was OverflowError: 500
        "t=" + "9" * 5000 + ",v1=00",
        "t=-1,v1=00",
        "t=,v1=",
        ",,,=",
    ],
    ids=["309-nines", "5000-nines", "negative", "empty", "commas"],
)
async def test_a_hostile_signature_header_is_401(base_url: str, signature: str) -> None:  # noqa: F811
    _, body = webhook("message.delivered", new_reference())
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await post(client, body, signature=signature)
    assert response.status_code == 401, response.text
