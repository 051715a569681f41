"""Loopback probe for docker-check.sh: GET /check -> 200 when the service is ready, labels a clearly
positive and a clearly negative review correctly with every model, serves /docs with its own
assets (from the container, which reaches no CDN) and serves the page at GET / with its script, style
and sample reviews (read from the image's service/static), else 503."""

import argparse
import http.server
import json
import urllib.request

REVIEWS = {
    "One of the best films I have ever seen: wonderful acting and a brilliant, moving story.": "positive",
    "The worst movie I have ever seen, a total waste of time with awful acting.": "negative",
}


def check(service: str) -> str:
    with urllib.request.urlopen(f"{service}/readyz", timeout=1) as response:
        ready = json.load(response)
    request = urllib.request.Request(
        f"{service}/predict?model=all", data=json.dumps({"reviews": list(REVIEWS)}).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=1.5) as response:
        body = json.load(response)
    with urllib.request.urlopen(f"{service}/docs", timeout=1) as response:
        page = response.read().decode()
    if "/docs/static/swagger-ui-bundle.js" not in page:
        raise AssertionError("/docs does not load Swagger UI from the service")
    with urllib.request.urlopen(f"{service}/docs/static/swagger-ui-bundle.js", timeout=1) as response:
        response.read()
    check_page(service)
    expected = list(REVIEWS.values())
    for result in body["results"]:
        labels = [prediction["label"] for prediction in result["predictions"]]
        if labels != expected:
            raise AssertionError(f"{result['model']} labelled {labels}, expected {expected}")
    return (f"ready: {ready['models']}; /predict labels correct for {[r['model'] for r in body['results']]}; "
            "/docs served with its assets; the page at / served with its files\n")


def fetch(url: str, content_type: str) -> bytes:
    with urllib.request.urlopen(url, timeout=1) as response:
        served = response.headers.get("content-type", "")
        if response.status != 200 or not served.startswith(content_type):
            raise AssertionError(f"{url} answered {response.status} {served!r}, expected 200 {content_type}")
        return response.read()


def check_page(service: str) -> None:
    """GET / is the page (its title and root element), and the files it names are served."""
    page = fetch(f"{service}/", "text/html").decode()
    for marker in ("<title>IMDB sentiment", 'id="sentiment-page"', 'src="static/page.js"',
                   'href="static/page.css"'):
        if marker not in page:
            raise AssertionError(f"GET / is not the page: {marker!r} missing")
    if b"score" not in fetch(f"{service}/static/page.js", "text/javascript"):
        raise AssertionError("/static/page.js is not the page's script")
    fetch(f"{service}/static/page.css", "text/css")
    samples = json.loads(fetch(f"{service}/static/samples.json", "application/json"))
    if not samples["reviews"]:
        raise AssertionError("/static/samples.json has no sample reviews")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--service", default="http://127.0.0.1:8000")
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            try:
                status, text = 200, check(args.service)
            except Exception as error:  # any failure is a failed check, reported to curl
                status, text = 503, f"check failed: {error}\n"
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(text.encode())
            print(text, end="", flush=True)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
