"""Drives AI Hub with the official `openai` Python package, as an application would.

Run by the Rust test `openai_sdk` (crates/aihub-server/tests/api/openai_sdk.rs), which starts the
gateway and passes OPENAI_BASE_URL and OPENAI_API_KEY. Prints one JSON object with the request
ids it saw, so the Rust side can check their usage records. Exits non-zero on any surprise.
"""

import json
import os
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"], max_retries=0)
ids = {}

# Non-streaming chat: the SDK parses the whole object.
chat = client.chat.completions.with_raw_response.create(
    model="mock-chat",
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    max_tokens=5,
)
ids["chat"] = chat.headers["x-request-id"]
completion = chat.parse()
assert completion.object == "chat.completion", completion
assert completion.choices[0].message.role == "assistant"
assert len(completion.choices[0].message.content.split()) == 5
assert completion.usage.completion_tokens == 5, completion.usage

# Streaming chat, with usage requested: every chunk parses; the last one carries usage.
stream = client.chat.completions.with_raw_response.create(
    model="mock-chat",
    messages=[{"role": "user", "content": "Count"}],
    max_tokens=4,
    stream=True,
    stream_options={"include_usage": True},
)
ids["stream"] = stream.headers["x-request-id"]
text, usage, chunks = "", None, 0
for chunk in stream.parse():
    chunks += 1
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
assert len(text.split()) == 4, text
assert usage is not None and usage.completion_tokens == 4, usage

# Streaming without usage: no chunk without choices reaches the application.
for chunk in client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "x"}], max_tokens=2, stream=True):
    assert chunk.choices, chunk

# Embeddings, as floats and as base64 (the SDK's default decodes base64).
emb = client.embeddings.with_raw_response.create(model="mock-embedding", input=["hello world", "bye"])
ids["embeddings"] = emb.headers["x-request-id"]
vectors = emb.parse()
assert len(vectors.data) == 2 and len(vectors.data[0].embedding) > 0

# Legacy completions.
legacy = client.completions.create(model="mock-chat", prompt="Once upon a time", max_tokens=3)
assert len(legacy.choices[0].text.split()) == 3

# Errors map to the SDK's exception classes.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    sys.exit("expected NotFoundError")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e
    ids["error"] = e.response.headers["x-request-id"]
try:
    OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="sk-aihub-wrong", max_retries=0).models.list()
    sys.exit("expected AuthenticationError")
except openai.AuthenticationError as e:
    assert e.code == "invalid_api_key", e
try:
    client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "x"}], max_tokens=-1)
    sys.exit("expected BadRequestError")
except openai.BadRequestError as e:
    assert e.param == "max_tokens", e

# A key limited to one request per minute: the second call is a RateLimitError whose code
# names the limit, and the rate-limit headers are there for the SDK's users.
limited = OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_LIMITED_KEY"], max_retries=0)
first = limited.chat.completions.with_raw_response.create(model="mock-chat", messages=[{"role": "user", "content": "x"}], max_tokens=2)
assert first.headers["x-ratelimit-limit-requests"] == "1", dict(first.headers)
assert first.headers["x-ratelimit-remaining-requests"] == "0", dict(first.headers)
try:
    limited.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    sys.exit("expected RateLimitError")
except openai.RateLimitError as e:
    assert e.status_code == 429 and e.code == "rpm_limit_exceeded", e
    assert int(e.response.headers["retry-after"]) >= 1
    ids["limited"] = e.response.headers["x-request-id"]

models = [m.id for m in client.models.list()]
assert "mock-chat" in models, models

print(json.dumps({"ids": ids, "chunks": chunks, "sdk": openai.__version__}))
