"""`ChatModel.check` (GET /models before a sweep) against a real HTTP server on a socket: the served models
pass, an unserved one and a malformed listing are one clear error each, a server without /models is let
through; and the check never imports openai's resource modules (~0.2 s on the way to a sweep's first call)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workbench.errors import ModelError
from workbench.rag.chat import ChatModel
from workbench.spec import ModelConfig

REPLIES = {"/ok/models": (200, json.dumps({"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]})),
           "/notjson/models": (200, "<html>hello</html>"), "/nodata/models": (200, json.dumps({"models": ["m1"]})),
           "/noid/models": (200, json.dumps({"data": [{"name": "m1"}]})), "/none/models": (404, "{}")}


@pytest.fixture(scope="module")
def server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = REPLIES.get(self.path, (500, "{}"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def model(url: str, name: str = "m1") -> ChatModel:
    return ChatModel(ModelConfig(provider="openai", base_url=url, model=name), base_url=url, max_retries=0)


def test_a_served_model_passes_and_an_unserved_one_names_what_is_served(server):
    model(f"{server}/ok").check()
    with pytest.raises(ModelError, match=r"does not serve model 'm3'; it lists: m1, m2"):
        model(f"{server}/ok", "m3").check()


@pytest.mark.parametrize("path", ["notjson", "nodata", "noid"])
def test_a_malformed_listing_is_one_error_naming_the_models_response(server, path):
    with pytest.raises(ModelError, match=r"sent a malformed /models response"):
        model(f"{server}/{path}").check()


def test_a_server_without_models_is_let_through(server):
    assert model(f"{server}/none").check() is None


def test_the_check_does_not_use_openais_resource_modules(server, monkeypatch):
    import openai

    def untouched(self):  # `client.models` imports every openai resource module on its first use
        raise AssertionError("the check used client.models")

    monkeypatch.setattr(openai.OpenAI, "models", property(untouched))
    model(f"{server}/ok").check()
