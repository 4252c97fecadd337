"""Health, readiness, metrics, the OpenAPI document and the page's configuration."""

from __future__ import annotations

from server import accounts
from server.app import create_app
from server.state import get_state
from tests.conftest import PASSWORD, make_settings, register


async def test_health_and_readiness(client):
    assert await (await client.get("/healthz")).get_json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert (await ready.get_json())["database"] == "ok"


async def test_readyz_reports_an_unreachable_database(tmp_path):
    app = create_app(make_settings(tmp_path, DATABASE__URL="postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    async with app.test_client() as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert (await response.get_json())["status"] == "unavailable"


async def test_openapi_documents_the_api(client):
    spec = await (await client.get("/openapi.json")).get_json()
    assert "/api/companions" in spec["paths"]
    assert "post" in spec["paths"]["/api/companions"]
    schema = str(spec["paths"]["/api/companions"]["post"])
    assert "CompanionIn" in schema or "duration" in schema
    docs = await client.get("/docs")
    assert "openapi.json" in await docs.get_data(as_text=True)


async def test_metrics_need_an_admin_or_the_token(tmp_path):
    app = create_app(make_settings(tmp_path, OBSERVABILITY__METRICS_TOKEN="scrape-me"))
    async with app.test_app():
        client = app.test_client()
        assert (await client.get("/metrics")).status_code == 401
        await client.get("/healthz")
        scraped = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert scraped.status_code == 200
        assert 'tutor_http_requests_total{method="GET",route="/healthz",status="200"}' in await scraped.get_data(
            as_text=True
        )
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        await register(client)
        assert (await client.get("/metrics")).status_code == 403
        await accounts.register(get_state(app).db, "root@school.test", PASSWORD, "Root", role="admin")
        await client.post("/api/auth/login", json={"email": "root@school.test", "password": PASSWORD})
        assert (await client.get("/metrics")).status_code == 200


async def test_config_tells_the_page_what_it_needs(client):
    config = await (await client.get("/api/config")).get_json()
    assert config["sso"]["enabled"] is False
    assert config["voice"]["backend"] == "local"
    assert "maths" in config["subjects"] and len(config["subjects"]) == 9


async def test_unknown_api_route_is_json_404(client):
    response = await client.get("/api/nope")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "not_found"


async def test_wrong_method_is_json_405(client):
    response = await client.put("/api/me")
    assert response.status_code == 405
    assert "error" in await response.get_json()
