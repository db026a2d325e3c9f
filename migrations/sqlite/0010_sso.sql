-- 0010: single sign-on. Admins configure OpenID Connect providers; the client secret is
-- sealed under the master key. An identity (provider, subject) is linked to one account;
-- the subject, not the email, is what a later sign-in is matched on.

CREATE TABLE sso_provider (
    provider_id           INTEGER    PRIMARY KEY,
    -- Short name used in the sign-in URLs (/auth/oidc/<slug>).
    slug                  TEXT    NOT NULL,
    display_name          TEXT    NOT NULL,
    issuer_url            TEXT    NOT NULL,
    client_id             TEXT    NOT NULL,
    sealed_client_secret  TEXT    NOT NULL,
    -- Space-separated scopes asked for besides openid.
    scopes                TEXT    NOT NULL,
    -- The claim holding the caller's groups (a string or an array of strings).
    groups_claim          TEXT    NOT NULL,
    -- JSON: {"roles": [{"group", "role"}], "teams": [{"group", "team"}]}.
    mapping               TEXT    NOT NULL,
    create_accounts       INTEGER    NOT NULL,
    link_by_email         INTEGER    NOT NULL,
    enabled               INTEGER    NOT NULL,
    created_at            INTEGER    NOT NULL,
    updated_at            INTEGER    NOT NULL,
    CONSTRAINT sso_provider_slug_key UNIQUE (slug)
);

CREATE TABLE sso_identity (
    provider_id    INTEGER    NOT NULL,
    subject        TEXT    NOT NULL,
    account_id     INTEGER    NOT NULL,
    linked_at      INTEGER    NOT NULL,
    last_login_at  INTEGER,
    CONSTRAINT sso_identity_pkey PRIMARY KEY (provider_id, subject),
    CONSTRAINT sso_identity_provider_fk FOREIGN KEY (provider_id) REFERENCES sso_provider (provider_id) ON DELETE CASCADE,
    CONSTRAINT sso_identity_account_fk FOREIGN KEY (account_id) REFERENCES account (account_id) ON DELETE CASCADE
);
CREATE INDEX sso_identity_account_idx ON sso_identity (account_id);
