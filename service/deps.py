"""Request dependencies, as Annotated aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from service.errors import ApiError
from service.runtime import Runtime

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Needed when SER_API_KEY is set")


# async, though they never wait: FastAPI runs a plain `def` dependency in its thread pool, a
# thread hop per request for a function of one line.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def key_matches(key: str | None, expected: SecretStr) -> bool:
    # compare_digest: the time taken does not reveal how much of the key was right.
    return key is not None and hmac.compare_digest(key.encode(), expected.get_secret_value().encode())


async def require_api_key(request: Request, key: Annotated[str | None, Depends(_key_header)]) -> None:
    expected = request.app.state.runtime.settings.api_key
    if expected is not None and not key_matches(key, expected):
        raise ApiError("unauthorized")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ApiKey = Depends(require_api_key)
