"""The real server: `python -m service` under uvicorn on a free loopback port, spoken to over HTTP."""

import httpx
import pytest

from tests.conftest import MODEL_NAMES, running_server


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


def test_predicts_over_http(server):
    base_url, _ = server
    with httpx.Client(base_url=base_url, timeout=10) as client:
        body = client.post("/predict", params={"model": "all"},
                           json={"reviews": ["One of the best films ever made, wonderful acting.",
                                             "The worst movie I have ever seen, a total waste of time."]}).json()
    assert [result["model"] for result in body["results"]] == MODEL_NAMES
    for result in body["results"]:
        assert [p["label"] for p in result["predictions"]] == ["positive", "negative"]


def test_errors_over_http(server):
    base_url, _ = server
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.post("/predict", content=b"nope", headers={"content-type": "application/json"}).status_code == 422
        assert client.post("/predict", content=b"x" * (5 * 1024 * 1024)).status_code == 413
        assert client.get("/healthz").json() == {"status": "ok"}
        assert "sentiment_http_requests_total" in client.get("/metrics").text


def test_concurrent_clients_get_their_own_answers(server):
    import asyncio

    base_url, _ = server
    reviews = [f"{'great wonderful' if i % 2 else 'awful boring'} film number {i}" for i in range(64)]

    async def scenario():
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            responses = await asyncio.gather(*(client.post("/predict?model=conv1d", json={"reviews": [r]})
                                               for r in reviews))
            batch = await client.post("/predict?model=conv1d", json={"reviews": reviews})
        return responses, batch

    responses, batch = asyncio.run(scenario())
    singles = [r.json()["results"][0]["predictions"][0] for r in responses]
    assert singles == batch.json()["results"][0]["predictions"]



def test_several_workers_serve_and_share_metrics():
    with running_server(workers="2") as (base_url, _):
        with httpx.Client(base_url=base_url, timeout=10) as client:
            for _ in range(20):  # new connections, spread over both workers by the kernel
                with httpx.Client(base_url=base_url, timeout=10) as fresh:
                    body = fresh.post("/predict?model=conv1d", json={"reviews": ["One of the best films ever made, wonderful acting."]}).json()
                    assert body["results"][0]["predictions"][0]["label"] == "positive"
            metrics = client.get("/metrics").text
    line = next(line for line in metrics.splitlines()
                if line.startswith('sentiment_reviews_scored_total{model="conv1d"}'))
    assert float(line.rsplit(" ", 1)[1]) == 20.0  # counted across both processes
