"""The peers of `peers.py`: each a small program a user would write with that tool, run as a fresh process.

Every peer gets the same work: `messages.json` (the workbench's own retrieved prompts, grouped by variant),
the endpoint's base URL and the concurrency. Each answers every message and keeps the answers (a file or
its tool's store), so "done" means what it means for the workbench: answered and recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

COMMON = '''
import json, sys
work = json.load(open(sys.argv[1]))
BASE, CONCURRENCY, OUT = work["base_url"], work["concurrency"], sys.argv[2]
VARIANTS = work["variants"]  # {variant: [messages, ...]}
'''

ASYNCIO = COMMON + '''
import asyncio
from openai import AsyncOpenAI

async def main():
    client = AsyncOpenAI(base_url=BASE, api_key="none", max_retries=2)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(variant, i, messages):
        async with sem:
            r = await client.chat.completions.create(model="latency-endpoint", messages=messages,
                                                     temperature=0, max_tokens=32)
        return {"variant": variant, "i": i, "answer": r.choices[0].message.content}

    rows = await asyncio.gather(*(one(v, i, m) for v, ms in VARIANTS.items() for i, m in enumerate(ms)))
    with open(OUT + "/answers.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\\n" for r in rows)

asyncio.run(main())
'''

RAGAS = COMMON + '''
import asyncio
from openai import AsyncOpenAI
from ragas import Dataset, experiment

async def main():
    client = AsyncOpenAI(base_url=BASE, api_key="none", max_retries=2)
    sem = asyncio.Semaphore(CONCURRENCY)

    @experiment()
    async def answer(row):
        async with sem:
            r = await client.chat.completions.create(model="latency-endpoint", messages=json.loads(row["messages"]),
                                                     temperature=0, max_tokens=32)
        return {**row, "answer": r.choices[0].message.content}

    runs = []
    for variant, ms in VARIANTS.items():
        ds = Dataset(name=f"eval-{variant}", backend="local/csv", root_dir=OUT)
        for i, m in enumerate(ms):
            ds.append({"id": str(i), "messages": json.dumps(m)})
        ds.save()
        runs.append(answer.arun(ds, name=f"run-{variant}"))
    await asyncio.gather(*runs)

asyncio.run(main())
'''

MLFLOW = COMMON + '''
import os
os.environ["MLFLOW_GENAI_EVAL_MAX_WORKERS"] = str(CONCURRENCY)
import mlflow
from mlflow.genai.scorers import scorer
from openai import OpenAI

mlflow.set_tracking_uri(f"sqlite:///{OUT}/mlflow.db")
mlflow.set_experiment("peers")
client = OpenAI(base_url=BASE, api_key="none", max_retries=2)

def predict(messages):
    r = client.chat.completions.create(model="latency-endpoint", messages=messages, temperature=0, max_tokens=32)
    return r.choices[0].message.content

@scorer
def answered(outputs) -> bool:
    return bool(outputs)

for variant, ms in VARIANTS.items():
    with mlflow.start_run(run_name=variant):
        mlflow.genai.evaluate(data=[{"inputs": {"messages": m}} for m in ms], predict_fn=predict, scorers=[answered])
'''

PROGRAMS = {"asyncio": ASYNCIO, "ragas": RAGAS, "mlflow": MLFLOW}


def promptfoo_config(work: dict, folder: Path) -> Path:
    """A promptfoo eval of the same messages: each test's `messages` var is the chat as JSON, which promptfoo
    sends as the message list."""
    tests = [{"vars": {"messages": json.dumps(m)}, "description": f"{v}/{i}"}
             for v, ms in work["variants"].items() for i, m in enumerate(ms)]
    config = {
        "description": "peers",
        "prompts": ["{{ messages | safe }}"],
        "providers": [{"id": "openai:chat:latency-endpoint",
                       "config": {"apiBaseUrl": work["base_url"], "apiKey": "none", "temperature": 0,
                                  "max_tokens": 32}}],
        "tests": tests,
    }
    path = folder / "promptfooconfig.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path
