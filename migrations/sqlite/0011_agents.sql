-- 0011: enforcement agents. An enrollment token (single use, expiring, revocable, kept as
-- a SHA-256 digest) admits one agent, which brings its own Ed25519 public key: its private
-- key never leaves it, and it signs every later call with it.

CREATE TABLE enrollment_token (
    enrollment_token_id  INTEGER    PRIMARY KEY,
    token_digest         TEXT    NOT NULL,
    -- JSON object of the labels the enrolled agent gets.
    labels               TEXT    NOT NULL,
    name                 TEXT,
    created_by           TEXT    NOT NULL,
    created_at           INTEGER    NOT NULL,
    expires_at           INTEGER    NOT NULL,
    used_at              INTEGER,
    revoked_at           INTEGER,
    agent_id             INTEGER,
    CONSTRAINT enrollment_token_digest_key UNIQUE (token_digest)
);

CREATE TABLE agent (
    agent_id       INTEGER    PRIMARY KEY,
    name           TEXT    NOT NULL,
    labels         TEXT    NOT NULL,
    -- The agent's own Ed25519 public key, hex.
    public_key     TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    enrolled_at    INTEGER    NOT NULL,
    last_seen_at   INTEGER,
    revoked_at     INTEGER,
    CONSTRAINT agent_public_key_key UNIQUE (public_key)
);
