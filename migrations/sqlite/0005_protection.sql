-- 0005: how APIs are protected, who calls them, and the organisation's own data classes.
-- An API's protection (authentication, L1–L4, rate limits) and each operation's override
-- are JSON documents checked by the application; an operation's data-class corrections
-- are kept apart from what re-import detects, so they survive it.

ALTER TABLE api ADD COLUMN protection TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_operation ADD COLUMN protection TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_operation ADD COLUMN class_edits TEXT NOT NULL DEFAULT '{}';

CREATE TABLE client_app (
    client_app_id  INTEGER PRIMARY KEY,
    team_id        INTEGER NOT NULL,
    name           TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    rotation_days  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    CONSTRAINT client_app_team_fk FOREIGN KEY (team_id) REFERENCES team (team_id),
    CONSTRAINT client_app_name_key UNIQUE (name),
    CONSTRAINT client_app_kind_check CHECK (kind IN ('service', 'partner', 'mobile', 'web')),
    CONSTRAINT client_app_rotation_check CHECK (rotation_days BETWEEN 1 AND 3650)
);
CREATE INDEX client_app_team_idx ON client_app (team_id);

-- One row per instance's credential. API keys are kept as SHA-256 digests only; HMAC
-- signing keys, which the agents need to verify signatures, sealed under the master key
-- (ChaCha20-Poly1305, bound to the key id).
CREATE TABLE client_credential (
    client_credential_id  INTEGER PRIMARY KEY,
    client_app_id         INTEGER NOT NULL,
    kind                  TEXT    NOT NULL,
    instance              TEXT    NOT NULL,
    key_prefix            TEXT,
    key_digest            TEXT,
    identity              TEXT,
    sealed_secret         TEXT,
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER,
    revoked_at            INTEGER,
    CONSTRAINT client_credential_app_fk FOREIGN KEY (client_app_id) REFERENCES client_app (client_app_id) ON DELETE CASCADE,
    CONSTRAINT client_credential_digest_key UNIQUE (key_digest),
    CONSTRAINT client_credential_kind_check CHECK (kind IN ('api_key', 'mtls', 'hmac'))
);
CREATE INDEX client_credential_app_idx ON client_credential (client_app_id);

CREATE TABLE data_class (
    data_class_id  INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    keywords       TEXT    NOT NULL,
    patterns       TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    CONSTRAINT data_class_name_key UNIQUE (name)
);
