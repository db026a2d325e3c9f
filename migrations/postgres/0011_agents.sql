-- 0011: enforcement agents. An enrollment token (single use, expiring, revocable, kept as
-- a SHA-256 digest) admits one agent, which brings its own Ed25519 public key: its private
-- key never leaves it, and it signs every later call with it.

CREATE TABLE enrollment_token (
    enrollment_token_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_digest         TEXT    NOT NULL,
    -- JSON object of the labels the enrolled agent gets.
    labels               TEXT    NOT NULL,
    name                 TEXT,
    created_by           TEXT    NOT NULL,
    created_at           BIGINT     NOT NULL,
    expires_at           BIGINT     NOT NULL,
    used_at              BIGINT,
    revoked_at           BIGINT,
    agent_id             BIGINT,
    CONSTRAINT enrollment_token_digest_key UNIQUE (token_digest)
);

CREATE TABLE agent (
    agent_id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT    NOT NULL,
    labels         TEXT    NOT NULL,
    -- The agent's own Ed25519 public key, hex.
    public_key     TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    enrolled_at    BIGINT     NOT NULL,
    last_seen_at   BIGINT,
    revoked_at     BIGINT,
    CONSTRAINT agent_public_key_key UNIQUE (public_key)
);
