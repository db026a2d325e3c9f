-- 0002: the append-only audit log, a SHA-256 hash chain. `audit_head` is a single row
-- that every append updates first, which serialises appends (a row lock on PostgreSQL,
-- the write lock on SQLite) so the chain stays strictly linear across replicas.

CREATE TABLE audit_head (
    audit_head_id  BIGINT  PRIMARY KEY,
    seq            BIGINT  NOT NULL,
    hash           TEXT    NOT NULL,
    CONSTRAINT audit_head_single CHECK (audit_head_id = 1)
);
INSERT INTO audit_head (audit_head_id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_entry (
    seq          BIGINT  PRIMARY KEY,
    at           BIGINT  NOT NULL,
    actor_type   TEXT    NOT NULL,
    actor_id     BIGINT,
    actor_label  TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    target_type  TEXT    NOT NULL,
    target_id    TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    user_agent   TEXT    NOT NULL,
    request_id   TEXT    NOT NULL,
    reason       TEXT,
    -- Canonical JSON of a before/after summary; never contains secrets.
    details      TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    CONSTRAINT audit_entry_hash_key UNIQUE (hash)
);
CREATE INDEX audit_entry_at_idx ON audit_entry (at);
CREATE INDEX audit_entry_target_idx ON audit_entry (target_type, target_id);
CREATE INDEX audit_entry_actor_idx ON audit_entry (actor_type, actor_id);
