-- 0001: accounts, teams, personal API tokens, login throttling and sessions.
-- Times are Unix milliseconds (BIGINT) so that SQLite and PostgreSQL share one encoding.
-- Shipped migrations are never edited: add a new numbered file instead.

CREATE TABLE team (
    team_id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    CONSTRAINT team_name_key UNIQUE (name)
);

CREATE TABLE account (
    account_id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email                      TEXT    NOT NULL,
    display_name               TEXT    NOT NULL,
    role                       TEXT    NOT NULL,
    -- argon2id PHC string; NULL until an invited user sets a password.
    password_hash              TEXT,
    -- SHA-256 of a one-time password set-up token (invitation or reset link).
    password_setup_digest      TEXT,
    password_setup_expires_at  BIGINT,
    -- Bumped whenever every session of the account must end (password change, disable).
    session_generation         BIGINT  NOT NULL DEFAULT 0,
    disabled_at                BIGINT,
    created_at                 BIGINT  NOT NULL,
    updated_at                 BIGINT  NOT NULL,
    CONSTRAINT account_email_key UNIQUE (email),
    CONSTRAINT account_password_setup_digest_key UNIQUE (password_setup_digest),
    CONSTRAINT account_role_check CHECK (role IN ('admin', 'security', 'developer', 'auditor'))
);

CREATE TABLE team_member (
    team_id     BIGINT  NOT NULL REFERENCES team (team_id) ON DELETE CASCADE,
    account_id  BIGINT  NOT NULL REFERENCES account (account_id) ON DELETE CASCADE,
    CONSTRAINT team_member_pkey PRIMARY KEY (team_id, account_id)
);
CREATE INDEX team_member_account_idx ON team_member (account_id);

CREATE TABLE api_token (
    api_token_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT  NOT NULL REFERENCES account (account_id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    -- SHA-256 of the token: the token itself is shown once and never stored.
    token_digest  TEXT    NOT NULL,
    -- The first characters of the token, so its owner can tell tokens apart.
    token_prefix  TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    CONSTRAINT api_token_digest_key UNIQUE (token_digest),
    CONSTRAINT api_token_account_name_key UNIQUE (account_id, name)
);

-- Failed logins, kept for an hour, for per-account and per-source throttling that holds
-- across replicas.
CREATE TABLE login_failure (
    login_failure_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email             TEXT    NOT NULL,
    source            TEXT    NOT NULL,
    failed_at         BIGINT  NOT NULL
);
CREATE INDEX login_failure_email_idx ON login_failure (email, failed_at);
CREATE INDEX login_failure_source_idx ON login_failure (source, failed_at);

-- Dashboard sessions (tower-sessions records), shared by every replica.
CREATE TABLE session (
    session_id  TEXT    PRIMARY KEY,
    account_id  BIGINT  REFERENCES account (account_id) ON DELETE CASCADE,
    data        TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX session_expires_at_idx ON session (expires_at);
CREATE INDEX session_account_idx ON session (account_id);
