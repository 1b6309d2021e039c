"""Elasticsearch through the official Python client (major version matches the server)."""

import uuid

import httpx
from elasticsearch import Elasticsearch

from tests.support.services import reach, require


def test_index_and_search_a_document(services):
    es_cfg = services.elasticsearch
    require(es_cfg.url, "elasticsearch")
    es = Elasticsearch(es_cfg.url, basic_auth=(es_cfg.username, es_cfg.password), request_timeout=10)
    # GET / is not served by the integ-test-zip distribution (docs/backends.md); ask the node.
    nodes = reach("elasticsearch", es_cfg.url, es.nodes.info, node_id="_local", metric="_none")
    (node,) = nodes["nodes"].values()
    assert node["version"].split(".")[0] == "8", "the Python client's major must match the server"
    index = f"smoke-{uuid.uuid4().hex[:8]}"
    try:
        es.index(index=index, id="1", document={"title": "coreplane smoke test"}, refresh=True)
        hits = es.search(index=index, query={"match": {"title": "smoke"}})["hits"]
        assert hits["total"]["value"] == 1
        assert hits["hits"][0]["_id"] == "1"
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)


def test_anonymous_requests_are_refused(services):
    require(services.elasticsearch.url, "elasticsearch")
    response = reach("elasticsearch", services.elasticsearch.url, httpx.get, services.elasticsearch.url)
    assert response.status_code == 401
