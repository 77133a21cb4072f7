"""Settings read from the environment: comma-separated lists, secrets, closed choices."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from config import Settings


def test_comma_separated_lists_and_cidrs_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_MODELS", " tiny.en, base ,")
    monkeypatch.setenv("OUTBOUND_ALLOWLIST", "files.internal, 10.20.0.0/16,::1")
    settings = Settings()
    assert settings.allowed_models == ["tiny.en", "base"]
    assert settings.outbound_allowlist == [
        "files.internal",
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("::1/128"),
    ]


def test_empty_lists_mean_none_and_json_lists_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_MODELS", "")
    monkeypatch.setenv("OUTBOUND_ALLOWLIST", "")
    assert Settings().allowed_models == []
    assert Settings().outbound_allowlist == []
    assert Settings(allowed_models=["tiny.en"]).allowed_models == ["tiny.en"]


def test_passwords_are_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "hunter2")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@redis:6379/0")
    settings = Settings()
    assert "hunter2" not in repr(settings)
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "hunter2"


def test_closed_choices_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert Settings().log_level == "DEBUG"
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError, match="log_level"):
        Settings()
    monkeypatch.delenv("LOG_LEVEL")
    monkeypatch.setenv("COMPUTE_TYPE", "int4")
    with pytest.raises(ValidationError, match="compute_type"):
        Settings()


def test_object_storage_and_replica_settings_are_checked_together() -> None:
    with pytest.raises(ValidationError, match="needs S3_BUCKET"):
        Settings(storage_backend="s3")
    assert Settings(storage_backend="s3", s3_bucket="uploads").s3_prefix == "uploads/"
    with pytest.raises(ValidationError, match="S3_PREFIX"):
        Settings(s3_prefix="../elsewhere/")
    with pytest.raises(ValidationError, match="below REDIS_TIMEOUT_S"):
        Settings(redis_min_replicas=1, redis_min_replicas_timeout_s=5.0, redis_timeout_s=5.0)
    with pytest.raises(ValidationError, match="host:port"):
        Settings(redis_sentinels=["sentinel-1"])
    assert Settings(redis_sentinels="a:26379, b:26379").redis_sentinels == ["a:26379", "b:26379"]
