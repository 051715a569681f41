"""Optional API keys and CORS."""

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import MODELS_DIR

BODY = {"reviews": ["a fine film"]}


@pytest.fixture
def keyed_client(tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("# deployment keys\nfile-key-1\n\n")
    settings = Settings(model_dir=MODELS_DIR, api_keys="env-key-1, env-key-2", api_keys_file=key_file)
    with TestClient(create_app(settings)) as client:
        yield client


def test_no_keys_configured_means_open_access():
    with TestClient(create_app(Settings(model_dir=MODELS_DIR))) as client:
        assert client.post("/predict", json=BODY).status_code == 200


@pytest.mark.parametrize("key", ["env-key-1", "env-key-2", "file-key-1"])
def test_any_configured_key_is_accepted(keyed_client, key):
    assert keyed_client.post("/predict", json=BODY, headers={"X-API-Key": key}).status_code == 200
    assert keyed_client.get("/models", headers={"X-API-Key": key}).status_code == 200
    assert keyed_client.get("/metrics", headers={"X-API-Key": key}).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "env-key-3"}, {"X-API-Key": "env-key-1 "},
                                     {"X-API-Key": "# deployment keys"}, {"Authorization": "Bearer env-key-1"}])
def test_missing_or_wrong_keys_are_refused(keyed_client, headers):
    for response in (keyed_client.post("/predict", json=BODY, headers=headers),
                     keyed_client.get("/models", headers=headers), keyed_client.get("/metrics", headers=headers)):
        assert response.status_code == 401
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["header", "X-API-Key"] and detail["type"] == "unauthorized"
        assert "send a valid key in the X-API-Key header" in detail["msg"]


def test_the_key_is_checked_before_the_body_is_read(keyed_client):
    response = keyed_client.post("/predict", content=b"not json", headers={"content-type": "application/json"})
    assert response.status_code == 401  # not 422: an anonymous caller learns nothing about the body rules


def test_health_endpoints_stay_open(keyed_client):
    assert keyed_client.get("/healthz").status_code == 200
    assert keyed_client.get("/readyz").status_code in (200, 503)


def test_keys_from_the_environment(monkeypatch):
    monkeypatch.setenv("SENTIMENT_API_KEYS", "alpha,beta")
    monkeypatch.setenv("SENTIMENT_CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings()
    assert settings.accepted_api_keys() == ["alpha", "beta"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_unreadable_key_file_stops_start_up(tmp_path):
    with pytest.raises(ValueError, match="cannot read SENTIMENT_API_KEYS_FILE"):
        create_app(Settings(model_dir=MODELS_DIR, api_keys_file=tmp_path / "missing"))


def test_cors_is_closed_by_default():
    with TestClient(create_app(Settings(model_dir=MODELS_DIR))) as client:
        response = client.options("/predict", headers={"Origin": "https://a.example",
                                                       "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_configured_origins():
    with TestClient(create_app(Settings(model_dir=MODELS_DIR, cors_origins="https://a.example"))) as client:
        allowed = client.options("/predict", headers={"Origin": "https://a.example",
                                                      "Access-Control-Request-Method": "POST"})
        assert allowed.headers["access-control-allow-origin"] == "https://a.example"
        scored = client.post("/predict", json=BODY, headers={"Origin": "https://a.example"})
        assert scored.status_code == 200 and scored.headers["access-control-allow-origin"] == "https://a.example"
        other = client.post("/predict", json=BODY, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_openapi_declares_the_key_only_when_keys_are_configured(keyed_client):
    secured = keyed_client.get("/openapi.json").json()
    assert secured["paths"]["/predict"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert "/healthz" in secured["paths"] and "security" not in secured["paths"]["/healthz"]["get"]
    with TestClient(create_app(Settings(model_dir=MODELS_DIR))) as open_client:
        assert "security" not in open_client.get("/openapi.json").json()["paths"]["/predict"]["post"]


def test_an_empty_key_file_stops_start_up(tmp_path):
    empty = tmp_path / "keys"
    empty.write_text("# to be filled by the deployment\n\n")
    with pytest.raises(ValueError, match="holds no API key"):
        create_app(Settings(model_dir=MODELS_DIR, api_keys_file=empty))


def test_non_ascii_keys_work(tmp_path):
    with TestClient(create_app(Settings(model_dir=MODELS_DIR, api_keys="clé-secrète"))) as client:
        response = client.post("/predict", json=BODY, headers={"X-API-Key": "clé-secrète".encode()})
        assert response.status_code == 200
