"""Fixtures the whole suite shares: tiny real bundles, the real clip, a real server."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.bundles import ConstantLogits, make_bundle
from devtools.data import RAVDESS_CLIP
from devtools.server import running_server

# Starlette's TestClient sends `Host: testserver`: in-process apps answer to it too. (Servers
# started by `running_server` get no SER_ variable from here: they keep the default hosts.)
os.environ.setdefault("SER_ALLOWED_HOSTS", json.dumps(["localhost", "127.0.0.1", "::1", "testserver"]))


@pytest.fixture(scope="session")
def student_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("student"))


@pytest.fixture(scope="session")
def unsure_student_bundle(tmp_path_factory):
    """A student that always answers with confidence ~0.2: auto mode must fall back."""
    return make_bundle(tmp_path_factory.mktemp("unsure"), model=ConstantLogits([0.2, 0.1, 0.0, 0.0, 0.0, 0.0]),
                       name="unsure-student")


@pytest.fixture(scope="session")
def teacher_bundle(tmp_path_factory):
    """A confident 'teacher' that always says sad."""
    return make_bundle(tmp_path_factory.mktemp("teacher"), role="teacher",
                       model=ConstantLogits([0.0, 0.0, 0.0, 0.0, 6.0, 0.0]), window_s=2.0, hop_s=1.0)


@pytest.fixture(scope="session")
def ravdess_clip():
    if not RAVDESS_CLIP.is_file():
        pytest.skip(f"real RAVDESS audio not present at {RAVDESS_CLIP}")
    return RAVDESS_CLIP


@pytest.fixture
def server(student_bundle, teacher_bundle):
    """`ser serve` with the tiny student and teacher: (base url, process)."""
    with running_server(student_bundle, teacher_bundle) as (base, proc):
        yield base, proc
