"""/docs and /redoc work offline: their pages, scripts and styles come from the service alone."""

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect, sync_playwright
from prometheus_client import REGISTRY

from service.app import create_app
from service.config import Settings
from tests.conftest import MODELS_DIR, running_server

# Debian's chromium, driven by Playwright without a browser download of its own.
CHROMIUM = Path("/usr/bin/chromium")
PAGES = ("/docs", "/redoc")
CONTENT_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",),
                 ".png": ("image/png",), ".json": ("application/json",)}
# Anything that names a host: http://, https:// or protocol-relative //host URLs.
HOST_URL = re.compile(r"(?:https?:)?//[\w.-]+", re.IGNORECASE)
NOTHING = {"other hosts": [], "failed": [], "console errors": []}  # what the browser test allows
# Where a page names what the browser loads: script/style/icon links, ReDoc's spec-url, Swagger UI's url.
REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|\burl: '([^']*)'""")


@pytest.fixture(scope="module")
def client():
    # The pages need neither the models nor the lifespan: the client is not entered.
    return TestClient(create_app(Settings(model_dir=MODELS_DIR)))


def references(html: str) -> list[str]:
    return [src or url for src, url in REFERENCE.findall(html)]


def http_requests(path: str, status: int) -> float:
    return REGISTRY.get_sample_value("sentiment_http_requests_total",
                                     {"path": path, "method": "GET", "status": str(status)}) or 0.0


@pytest.mark.parametrize("page", PAGES)
def test_docs_pages_name_no_other_host(client, page):
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert HOST_URL.findall(response.text) == []
    assert len(references(response.text)) >= 3, response.text  # the script, the favicon, the schema at least
    assert client.head(page).status_code == 200


@pytest.mark.parametrize("page", PAGES)
def test_everything_a_docs_page_references_is_served_with_its_content_type(client, page):
    for url in references(client.get(page).text):
        assert url.startswith("/") and not url.startswith("//"), url
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(CONTENT_TYPES[Path(url).suffix]), url
        assert len(response.content) > 1000, url


def test_the_assets_are_the_swagger_ui_and_redoc_bundles(client):
    assert b"SwaggerUIBundle" in client.get("/docs/static/swagger-ui-bundle.js").content
    assert b"swagger-ui" in client.get("/docs/static/swagger-ui.css").content
    redoc = client.get("/docs/static/redoc.standalone.js").content
    assert b"Redoc" in redoc and b"cdn.redoc.ly" not in redoc  # its side-menu logo would come from there
    assert client.get("/docs/static/missing.js").status_code == 404


def test_swagger_ui_is_told_not_to_fetch_its_validator_badge(client):
    assert '"validatorUrl": null' in client.get("/docs").text


@pytest.mark.parametrize("page", PAGES)
def test_docs_pages_behind_a_root_path_reference_the_prefixed_urls(page):
    with TestClient(create_app(Settings(model_dir=MODELS_DIR)), root_path="/sentiment") as prefixed:
        urls = references(prefixed.get(f"/sentiment{page}").text)
        assert urls and all(url.startswith("/sentiment/") for url in urls), urls
        assert all(prefixed.get(url).status_code == 200 for url in urls), urls


def test_docs_pages_stay_out_of_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))], paths


def test_docs_requests_are_counted_under_their_route_not_as_unmatched(client):
    watched = [("/docs", 200), ("/redoc", 200), ("/docs/static/{name}", 200), ("unmatched", 200)]
    before = {key: http_requests(*key) for key in watched}
    for url in ("/docs", "/redoc", "/docs/static/swagger-ui.css", "/docs/static/redoc.standalone.js"):
        assert client.get(url).status_code == 200
    after = {key: http_requests(*key) for key in watched}
    assert {key: after[key] - before[key] for key in watched} == {
        ("/docs", 200): 1, ("/redoc", 200): 1, ("/docs/static/{name}", 200): 2, ("unmatched", 200): 0}


def watch(page: Page, base_url: str) -> dict[str, list[str]]:
    """Records what the page asks of other hosts (and stops it), failed loads and console errors."""
    seen = {key: [] for key in NOTHING}

    def foreign(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("data", "blob", "about") and f"{parts.scheme}://{parts.netloc}" != base_url

    def route(route) -> None:
        # Aborted, not sent: the test must not depend on whether this machine reaches the internet.
        if foreign(route.request.url):
            route.abort()
        else:
            route.continue_()

    page.route("**/*", route)
    page.on("request", lambda request: foreign(request.url) and seen["other hosts"].append(request.url))
    page.on("requestfailed", lambda request: seen["failed"].append(f"{request.url}: {request.failure}"))
    page.on("response", lambda response: response.status >= 400
            and seen["failed"].append(f"{response.url}: {response.status}"))
    page.on("console", lambda message: message.type == "error" and seen["console errors"].append(message.text))
    page.on("pageerror", lambda error: seen["console errors"].append(str(error)))
    return seen


def open_page(page: Page, url: str, seen: dict[str, list[str]]) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    # Before waiting for the page to render: a page that needs a CDN never does, and this says why.
    assert seen["other hosts"] == [], url


def test_docs_render_their_operations_offline_in_a_real_browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: this test drives Debian's chromium; install it with "
                    "`apt-get install chromium` (.ci/run does so when it runs as root)")
    with running_server() as (base_url, _), sync_playwright() as playwright:
        schema = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
        operations = [(method.upper(), path, operation["summary"])
                      for path, item in schema["paths"].items() for method, operation in item.items()]
        assert ("POST", "/predict", "Score reviews with one model or compare several") in operations
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            seen = watch(page, base_url)

            open_page(page, f"{base_url}/docs", seen)
            # Swagger UI's operation blocks: id operations-<tag>-<operationId>, one .opblock each.
            expect(page.locator("#operations-inference-predict .opblock-summary-method")).to_have_text("POST")
            expect(page.locator(".opblock")).to_have_count(len(operations))
            for method, path, summary in operations:
                block = page.locator(f".opblock-{method.lower()}", has=page.locator(f'[data-path="{path}"]'))
                expect(block).to_contain_text(summary)
            page.wait_for_load_state("networkidle")
            assert seen == NOTHING, "/docs"

            open_page(page, f"{base_url}/redoc", seen)
            # ReDoc renders each operation's summary as a heading, with its method and path beside it.
            for _, _, summary in operations:
                expect(page.locator("h2", has_text=summary)).to_be_visible()
            expect(page.get_by_text("/predict", exact=True).first).to_be_attached()
            page.wait_for_load_state("networkidle")  # late loads too, such as ReDoc's side-menu logo
            assert seen == NOTHING, "/redoc"
        finally:
            browser.close()
