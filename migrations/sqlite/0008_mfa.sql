-- 0008: a second factor for local accounts. The TOTP secret is sealed under the master
-- key; last_step is the newest 30-second step a code was accepted for, so a code works
-- once. Recovery codes are kept as SHA-256 digests and used once each.

CREATE TABLE account_totp (
    account_id     INTEGER    PRIMARY KEY,
    sealed_secret  TEXT    NOT NULL,
    -- NULL while enrolling: the first code confirms the authenticator holds the secret.
    confirmed_at   INTEGER,
    last_step      INTEGER    NOT NULL,
    created_at     INTEGER    NOT NULL,
    CONSTRAINT account_totp_account_fk FOREIGN KEY (account_id) REFERENCES account (account_id) ON DELETE CASCADE
);

CREATE TABLE recovery_code (
    account_id  INTEGER    NOT NULL,
    digest      TEXT    NOT NULL,
    used_at     INTEGER,
    CONSTRAINT recovery_code_pkey PRIMARY KEY (account_id, digest),
    CONSTRAINT recovery_code_account_fk FOREIGN KEY (account_id) REFERENCES account (account_id) ON DELETE CASCADE
);
