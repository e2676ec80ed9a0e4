"""Schema changes, append-only: never edit a shipped migration, add a new one."""

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    title TEXT,
    model TEXT,
    system_prompt TEXT,
    metadata TEXT,
    api_key_id TEXT
);
-- message bodies stored once, by content hash: a conversation resent on every
-- turn does not repeat its history in every row
CREATE TABLE contents (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE completions (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    completion_id TEXT,
    created_at REAL NOT NULL,
    session_id TEXT REFERENCES sessions(id) ON DELETE CASCADE,
    api_key_id TEXT,
    provider TEXT,
    model_requested TEXT,
    model_answered TEXT,
    status INTEGER NOT NULL,
    error_type TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cached_tokens INTEGER,
    reasoning_tokens INTEGER,
    tokens_estimated INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    latency_ms REAL,
    ttft_ms REAL,
    streamed INTEGER NOT NULL,
    client_disconnected INTEGER NOT NULL DEFAULT 0,
    prompt_refs TEXT,
    answer_ref TEXT
);
CREATE INDEX completions_created ON completions(created_at);
CREATE INDEX completions_session ON completions(session_id, created_at);
CREATE INDEX completions_completion_id ON completions(completion_id);
CREATE TABLE session_messages (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    role TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    completion_row INTEGER REFERENCES completions(id) ON DELETE SET NULL,
    created_at REAL NOT NULL,
    UNIQUE (session_id, position)
);
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY,
    completion_row INTEGER REFERENCES completions(id) ON DELETE CASCADE,
    message_id INTEGER REFERENCES session_messages(id) ON DELETE CASCADE,
    feedback_type TEXT,
    rating INTEGER,
    comment TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX feedback_completion ON feedback(completion_row);
CREATE INDEX feedback_message ON feedback(message_id)
"""),
    ("0002_api_keys", """
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_hint TEXT NOT NULL,
    models TEXT,
    providers TEXT,
    rpm_limit INTEGER,
    tpm_limit INTEGER,
    monthly_budget_usd REAL,
    expires_at REAL,
    system_prompt TEXT,
    metadata TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX completions_key_month ON completions(api_key_id, created_at)
"""),
    # 0: the client's request (its row holds its last try); n: its n-th failed try that a
    # retry or a fallback followed. Usage counts requests, not tries. Rows logged before
    # are attempts when their id is `<id>.<n>` of a request `<id>` in the log.
    ("0003_completion_attempt", """
ALTER TABLE completions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
UPDATE completions SET attempt = CAST(substr(request_id, length(rtrim(request_id, '0123456789')) + 1)
                                      AS INTEGER)
WHERE rtrim(request_id, '0123456789') <> request_id
  AND substr(rtrim(request_id, '0123456789'), -1) = '.'
  AND substr(request_id, 1, length(rtrim(request_id, '0123456789')) - 1)
      IN (SELECT request_id FROM completions)
"""),
    # rows are keyed by the gateway's own request id; the client's id is kept beside it
    ("0004_client_request_id", """
ALTER TABLE completions ADD COLUMN client_request_id TEXT;
CREATE INDEX completions_client_request_id ON completions(client_request_id)
"""),
    # the OpenTelemetry trace of a request, to go from a trace to its rows and back
    ("0005_trace_id", """
ALTER TABLE completions ADD COLUMN trace_id TEXT;
CREATE INDEX completions_trace_id ON completions(trace_id)
"""),
]
