"""The page at GET /: its files through the TestClient, and the page itself in a real headless Chromium
(Debian's, driven by Playwright) against a real server on the committed models."""

import contextlib
import json
import re
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect, sync_playwright
from prometheus_client import REGISTRY

from service.app import create_app
from service.config import Settings
from service.routes import page as page_route
from service.security import API_KEY_HEADER
from tests.conftest import MODEL_NAMES, MODELS_DIR, read_sample_reviews, running_server
from tests.test_docs import CHROMIUM, HOST_URL, NOTHING, watch

SAMPLES_FILE = page_route.STATIC_DIR / "samples.json"
HTML_CONTENT_TYPE = "text/html"
CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript", ".json": "application/json", "": HTML_CONTENT_TYPE}
# What the page's HTML names: stylesheet, script, icon, base and links.
REFERENCE = re.compile(r"""(?:src|href)="([^"]*)\"""")
API_KEY = "page-test-key"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1200, "height": 900}
BLUE_AND_ORANGE = {"positive": (33, 102, 172), "negative": (179, 88, 6)}


def samples() -> list[dict]:
    return json.loads(SAMPLES_FILE.read_text(encoding="utf-8"))["reviews"]


# ---- the page's files, through the TestClient


@pytest.fixture(scope="module")
def client():
    # The page and its files need neither the models nor the lifespan: the client is not entered.
    return TestClient(create_app(Settings(model_dir=MODELS_DIR)))


def test_the_page_is_html_that_names_no_other_host(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert HOST_URL.findall(response.text) == []
    assert 'id="sentiment-page"' in response.text and "<title>IMDB sentiment" in response.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in response.text
    assert "{{" not in response.text, "a placeholder was left unfilled"
    # The browser itself refuses anything from elsewhere.
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert client.head("/").status_code == 200


def test_everything_the_page_references_is_served_with_its_content_type(client):
    html = client.get("/").text
    (base,) = re.findall(r'<base href="([^"]*)">', html)
    assert base == "/"
    urls = [urljoin(base, url) for url in REFERENCE.findall(html) if not url.startswith("data:") and url != base]
    # The stylesheet, the script, and the links to the API's docs.
    assert {"/static/page.css", "/static/page.js", "/docs", "/redoc"} <= set(urls), urls
    script = client.get("/static/page.js").text
    assert '"static/samples.json"' in script  # the samples the script loads
    for url in [*urls, "/static/samples.json"]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(CONTENT_TYPES[Path(url).suffix]), url
        assert not url.startswith("/static/") or len(response.content) > 1000, url
    for name in page_route.ASSETS:
        response = client.get(f"/static/{name}")
        assert HOST_URL.findall(response.text) == [], name
        assert response.headers["etag"] and response.headers["x-content-type-options"] == "nosniff"
        assert client.get(f"/static/{name}", headers={"if-none-match": response.headers["etag"]}).status_code == 304
        assert client.head(f"/static/{name}").status_code == 200


def test_only_the_pages_own_files_are_served(client):
    shipped = {path.name for path in page_route.STATIC_DIR.iterdir()}
    assert shipped == {page_route.PAGE, *page_route.ASSETS}, "every file in service/static is served or removed"
    for url in ("/static/index.html", "/static/missing.js", "/static/..%2Froutes%2Fpage.py", "/static/"):
        assert client.get(url).status_code == 404, url


def test_the_page_behind_a_root_path_points_its_base_at_the_prefix():
    with TestClient(create_app(Settings(model_dir=MODELS_DIR)), root_path="/sentiment") as prefixed:
        html = prefixed.get("/sentiment/").text
        assert '<base href="/sentiment/">' in html
        assert prefixed.get(urljoin("/sentiment/", "static/page.js")).status_code == 200


def test_the_page_tells_the_script_the_length_limit_and_whether_keys_are_needed(client):
    assert 'data-max-review-chars="100000" data-api-keys="none"' in client.get("/").text
    keyed = TestClient(create_app(Settings(model_dir=MODELS_DIR, api_keys=API_KEY, max_review_chars=500)))
    assert 'data-max-review-chars="500" data-api-keys="required"' in keyed.get("/").text


def test_the_page_and_its_files_stay_public_when_api_keys_are_configured():
    with TestClient(create_app(Settings(model_dir=MODELS_DIR, api_keys=API_KEY))) as keyed:
        for url in ("/", *(f"/static/{name}" for name in page_route.ASSETS)):
            assert keyed.get(url).status_code == 200, url
        assert keyed.get("/models").status_code == 401  # what the page then calls is still guarded
        assert keyed.get("/models", headers={API_KEY_HEADER: API_KEY}).status_code == 200


def test_the_page_stays_out_of_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not [path for path in paths if path.startswith("/static")], paths


def test_page_requests_are_counted_under_their_routes(client):
    def count(path: str) -> float:
        return REGISTRY.get_sample_value("sentiment_http_requests_total",
                                         {"path": path, "method": "GET", "status": "200"}) or 0.0

    before = count("/"), count("/static/{name}")
    client.get("/")
    client.get("/static/page.css")
    assert (count("/") - before[0], count("/static/{name}") - before[1]) == (1, 1)


def test_the_samples_are_real_imdb_test_reviews_labelled_0_or_1():
    reviews = samples()
    assert 6 <= len(reviews) <= 8
    assert {review["label"] for review in reviews} == {0, 1}
    assert sum(len(review["text"].split()) < 60 for review in reviews) >= 3, "some short ones"
    assert any(len(review["text"].split()) > 500 for review in reviews), "one the models truncate"
    # The same reviews, labels and ratings as in the committed sample of the dataset (tests/data).
    committed = {(r["label"], r["id"]): r for r in read_sample_reviews() if r["split"] == "test"}
    for review in reviews:
        folder = "pos" if review["label"] == 1 else "neg"
        assert review["path"] == f"aclImdb/test/{folder}/{review['id']}_{review['rating']}.txt"
        assert review["rating"] >= 7 if review["label"] == 1 else review["rating"] <= 4
        original = committed[(review["label"], review["id"])]
        assert (review["text"], review["rating"]) == (original["text"], original["rating"]), review["path"]


# ---- the page in a real browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: these tests drive Debian's chromium; install it with "
                    "`apt-get install chromium` (.ci/run does so when it runs as root)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server():
    with running_server() as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def keyed_server():
    with running_server(api_keys=API_KEY) as (base_url, _):
        yield base_url


@contextlib.contextmanager
def open_page(browser, base_url: str, viewport: dict = DESKTOP):
    """A fresh page (its own context: no storage carried over) on the service's /, with its requests,
    failed loads and console errors recorded; the page's state is "ready" or "needs-key" on entry."""
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        seen = watch(page, base_url)
        requests = []
        page.on("request", lambda request: requests.append((request.method, request.url, request.headers)))
        page.goto(f"{base_url}/")
        assert seen["other hosts"] == []
        expect(page.locator("#sentiment-page")).to_have_attribute("data-state", re.compile("^(ready|needs-key)$"))
        expect(page.locator("button.sample")).to_have_count(len(samples()))
        yield page, seen, requests
    finally:
        context.close()


def load_sample(page: Page, index: int) -> dict:
    page.locator("button.sample").nth(index).click()
    sample = samples()[index]
    expect(page.locator("#review")).to_have_value(sample["text"])
    return sample


def score(page: Page) -> None:
    page.locator("#score").click()
    expect(page.locator("#sentiment-page")).to_have_attribute("data-state", "scored")


def post(base_url: str, path: str, text: str, **params) -> dict:
    response = httpx.post(f"{base_url}{path}", params=params, json={"reviews": [text]}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def check_words_match_explain(page: Page, base_url: str, text: str, model: str) -> None:
    """The highlighted words: one element per token of POST /explain, each with the token's contribution in
    data-contribution, its text, and a colour on the side of its sign."""
    expect(page.locator(f'#words[data-model="{model}"] .word').first).to_be_attached()
    shown = page.locator("#words .word").evaluate_all("""spans => spans.map(span => ({
        contribution: span.dataset.contribution, text: span.textContent, title: span.title,
        background: getComputedStyle(span).backgroundColor}))""")
    (explanation,) = post(base_url, "/explain", text, model=model)["explanations"]
    tokens = explanation["tokens"]
    assert len(shown) == len(tokens) > 0
    for word, token in zip(shown, tokens, strict=True):
        value = float(word["contribution"])  # a number, and exactly the service's
        assert value == token["contribution"], (word, token)
        assert word["text"] == text[token["start"]:token["end"]]
        assert token["text"] in word["title"]
        if token["truncated"]:
            continue
        red, green, blue, alpha = rgba(word["background"])
        if abs(value) > 0.05 * max(abs(t["contribution"]) for t in tokens):
            side = "positive" if value > 0 else "negative"
            assert (red, green, blue) == BLUE_AND_ORANGE[side] and alpha > 0, (word, token)


def rgba(css: str) -> tuple[int, int, int, float]:
    numbers = re.findall(r"[\d.]+", css)
    red, green, blue = (int(float(n)) for n in numbers[:3])
    return red, green, blue, float(numbers[3]) if len(numbers) > 3 else 1.0


def test_a_sample_review_scores_with_every_model_and_highlights_its_words(browser, server):
    models = httpx.get(f"{server}/models", timeout=10).json()
    with open_page(browser, server) as (page, seen, _):
        boxes = page.locator("#models input[type=checkbox]")
        expect(boxes).to_have_count(len(MODEL_NAMES))
        assert sorted(boxes.evaluate_all("boxes => boxes.filter(box => box.checked).map(box => box.value)")) == \
            MODEL_NAMES
        sample = load_sample(page, 3)  # short, and the models disagree on it
        score(page)

        expected = {r["model"]: r["predictions"][0] for r in post(server, "/predict", sample["text"],
                                                                  model="all")["results"]}
        rows = page.locator(".model-score")
        expect(rows).to_have_count(len(MODEL_NAMES))
        true_label = "positive" if sample["label"] == 1 else "negative"
        expect(page.locator("#truth")).to_contain_text(f"True label of this IMDB test review: {true_label}")
        for info in models["models"]:
            row = page.locator(f'.model-score[data-model="{info["name"]}"]')
            prediction = expected[info["name"]]
            assert float(row.get_attribute("data-score")) == prediction["score"]
            expect(row.locator(".answer")).to_contain_text(prediction["label"])
            expect(row.locator(".answer")).to_contain_text("✓ right" if prediction["label"] == true_label
                                                           else "✗ wrong")
            expect(row.locator(".fill")).to_have_class(re.compile(prediction["label"]))
            width = row.locator(".fill").evaluate("fill => fill.getBoundingClientRect().width")
            track = row.locator(".bar").evaluate("bar => bar.getBoundingClientRect().width")
            assert width / track == pytest.approx(prediction["score"], abs=0.01)
            figures = row.locator(".figures")
            expect(figures).to_contain_text(f"test accuracy {100 * info['test_accuracy']:.1f} %")
            expect(figures).to_contain_text(f"ECE {100 * info['calibration']['after']['ece']:.2f} %")
        labels = {prediction["label"] for prediction in expected.values()}
        expect(page.locator("#agreement")).to_contain_text(
            f"all {len(MODEL_NAMES)} models say" if len(labels) == 1 else f"the {len(MODEL_NAMES)} models disagree")

        expect(page.locator("#explain-model")).to_have_value(models["default"])
        check_words_match_explain(page, server, sample["text"], models["default"])
        other = next(name for name in MODEL_NAMES if name != models["default"] and "conv" in name)
        page.locator("#explain-model").select_option(other)
        check_words_match_explain(page, server, sample["text"], other)
        page.wait_for_load_state("networkidle")
        assert seen == NOTHING


def test_hovering_or_focusing_a_word_shows_its_contribution(browser, server):
    with open_page(browser, server) as (page, seen, _):
        load_sample(page, 1)
        score(page)
        words = page.locator("#words .word")
        expect(words.first).to_be_attached()
        # One tab stop for the text; the arrow keys move from word to word.
        assert words.evaluate_all("spans => spans.map(span => span.tabIndex)") == [0] + [-1] * (words.count() - 1)
        words.first.focus()
        detail = page.locator("#word-detail")
        first = float(words.first.get_attribute("data-contribution"))
        expect(detail).to_contain_text(f"“{words.first.text_content()}”")
        expect(detail).to_contain_text(f"{abs(first):.3f}")
        page.keyboard.press("ArrowRight")
        expect(words.nth(1)).to_be_focused()
        expect(words.nth(1)).to_have_attribute("tabindex", "0")
        second = float(words.nth(1).get_attribute("data-contribution"))
        expect(detail).to_contain_text(f"{abs(second):.3f}")
        page.keyboard.press("End")
        expect(words.last).to_be_focused()
        words.nth(2).hover()
        expect(detail).to_contain_text(f"“{words.nth(2).text_content()}”")
        assert f"{abs(float(words.nth(2).get_attribute('data-contribution'))):.3f}" in words.nth(2).get_attribute(
            "title")
        expect(page.locator("#legend")).to_be_visible()
        expect(page.locator("#legend-text")).to_contain_text("towards negative")
        assert seen == NOTHING


def test_an_empty_review_gets_a_message_and_sends_nothing(browser, server):
    with open_page(browser, server) as (page, seen, requests):
        page.locator("#score").click()
        expect(page.locator("#message")).to_contain_text("The review is empty")
        page.locator("#review").fill(" \n\t\u0085 ")  # whitespace to the service too
        page.locator("#review").press("Control+Enter")
        expect(page.locator("#message")).to_contain_text("The review is empty")
        expect(page.locator("#sentiment-page")).to_have_attribute("data-state", "invalid")
        expect(page.locator("#results")).to_be_hidden()
        assert not [url for method, url, _ in requests if method == "POST"]
        assert seen == NOTHING


def test_a_review_over_the_length_limit_gets_the_too_long_message(browser, server):
    with open_page(browser, server) as (page, seen, requests):
        page.locator("#review").fill("great " * 16_667)  # 100,002 characters; the service takes 100,000
        expect(page.locator("#review-count")).to_have_class(re.compile("over"))
        page.locator("#score").click()
        expect(page.locator("#message")).to_contain_text(
            "The review is too long: it has 100,002 characters and the service accepts at most 100,000")
        assert not [url for method, url, _ in requests if method == "POST"]
        assert seen == NOTHING


def test_the_predict_warnings_are_shown_in_words(browser, server):
    with open_page(browser, server) as (page, seen, _):
        long_sample = max(range(len(samples())), key=lambda index: len(samples()[index]["text"].split()))
        load_sample(page, long_sample)
        score(page)
        warnings = page.locator("#warnings li[data-warning=truncated]")
        expect(warnings.first).to_contain_text("scored only its last 500 words")
        expect(page.locator("#words .word[data-truncated]").first).to_be_attached()
        page.locator("#review").fill("zzyzx qwfpgj blorptak")
        score(page)
        expect(page.locator("#truth")).to_be_hidden()  # no longer the sample
        expect(page.locator("#warnings li[data-warning=no_known_words]")).to_contain_text(
            "knew none of the review's words")
        assert seen == NOTHING


def test_a_service_that_is_not_ready_gets_the_not_ready_message(browser, server):
    unavailable = {"detail": [{"type": "model_unavailable", "loc": ["model", "conv1d"],
                               "msg": "model conv1d is warming up; retry shortly"}]}
    with open_page(browser, server) as (page, seen, _):
        # The browser gets the service's 503 answer for /predict (as while a model is unavailable).
        page.route(re.compile(r".*/predict\?.*"), lambda route: route.fulfill(
            status=503, content_type="application/json", body=json.dumps(unavailable), headers={"Retry-After": "1"}))
        load_sample(page, 0)
        page.locator("#score").click()
        message = page.locator("#message")
        expect(message).to_contain_text("The service is not ready to answer (503 Service Unavailable)")
        expect(message).to_contain_text("model conv1d is warming up; retry shortly")
        expect(page.locator("#score")).to_be_enabled()
        assert seen["other hosts"] == [] and [entry.split("?")[0] for entry in seen["failed"]] == [
            f"{server}/predict"]
        assert all("status of 503" in error for error in seen["console errors"]), seen["console errors"]


def test_with_api_keys_the_page_asks_for_the_key_and_keeps_it_in_memory_only(browser, keyed_server):
    with open_page(browser, keyed_server) as (page, seen, requests):
        key_field = page.get_by_label("API key", exact=True)
        expect(key_field).to_be_visible()
        expect(page.locator("#key-message")).to_contain_text("needs an API key")
        load_sample(page, 0)
        page.locator("#score").click()
        expect(page.locator("#message")).to_contain_text("Enter the API key first")
        expect(key_field).to_be_focused()

        key_field.fill("not-the-key")
        key_field.press("Enter")
        expect(page.locator("#key-message")).to_contain_text("refused the API key (401 Unauthorized)")
        assert [entry for entry in seen["failed"]] == [f"{keyed_server}/models: 401"]
        assert all("status of 401" in error for error in seen["console errors"]), seen["console errors"]

        key_field.fill(API_KEY)
        page.get_by_role("button", name="Use key").click()
        expect(page.locator("#key-message")).to_contain_text("Key accepted")
        expect(page.locator("#models input[type=checkbox]")).to_have_count(len(MODEL_NAMES))
        expect(key_field).to_have_value("")
        score(page)
        expect(page.locator(".model-score")).to_have_count(len(MODEL_NAMES))
        expect(page.locator("#words .word").first).to_be_attached()
        sent = {url.split("?")[0].rsplit("/", 1)[1]: headers.get(API_KEY_HEADER.lower())
                for method, url, headers in requests if method == "POST"}
        assert sent == {"predict": API_KEY, "explain": API_KEY}
        # Kept in memory only: nothing in the browser's storage or cookies.
        assert page.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]") == [0, 0, ""]
        assert page.context.cookies() == []
        assert API_KEY not in page.content()
        page.wait_for_load_state("networkidle")
        assert seen["other hosts"] == [] and seen["failed"] == [f"{keyed_server}/models: 401"]


def test_the_page_works_at_a_phones_width_and_from_the_keyboard(browser, server):
    with open_page(browser, server, viewport=PHONE) as (page, seen, _):
        def fits() -> bool:
            return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")

        assert fits()
        page.locator("button.sample").first.focus()
        page.keyboard.press("Tab")
        expect(page.locator("button.sample").nth(1)).to_be_focused()
        page.keyboard.press("Enter")  # loads the second sample
        expect(page.locator("#review")).to_have_value(samples()[1]["text"])
        page.locator("#review").focus()
        page.keyboard.press("Control+Enter")
        expect(page.locator("#sentiment-page")).to_have_attribute("data-state", "scored")
        expect(page.locator(".model-score")).to_have_count(len(MODEL_NAMES))
        expect(page.locator("#words .word").first).to_be_attached()
        assert fits()
        bar = page.locator(".model-score .bar").first.bounding_box()
        assert bar["width"] > PHONE["width"] / 2  # the bar takes the row's width on a phone
        # The model checkboxes and the explanation's model are reached and changed from the keyboard.
        page.locator("#models input").first.focus()
        page.keyboard.press("Space")
        expect(page.locator("#models input").first).not_to_be_checked()
        select = page.locator("#explain-model")
        before = select.input_value()
        select.focus()
        page.keyboard.press("ArrowUp" if before == MODEL_NAMES[-1] else "ArrowDown")
        expect(select).not_to_have_value(before)
        expect(page.locator("#words")).to_have_attribute("data-model", select.input_value())
        page.wait_for_load_state("networkidle")
        assert seen == NOTHING
