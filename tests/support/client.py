"""The app in-process: a TestClient over `create_app` with the given bundles and settings."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.app import create_app
from service.bundle import Bundle
from service.settings import Settings


def client_for(student: Bundle, teacher: Bundle | None = None, **settings) -> TestClient:
    s = Settings(student_bundle=student.path, teacher_bundle=teacher.path if teacher else None, **settings)
    return TestClient(create_app(s))
