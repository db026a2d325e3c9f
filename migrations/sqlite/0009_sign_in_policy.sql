-- 0009: the sign-in policy admins set in the dashboard. One row at most; until it exists
-- the configured default (PALISADE_MFA_REQUIRED_ROLES) applies.

CREATE TABLE sign_in_policy (
    policy_id           INTEGER    PRIMARY KEY,
    -- JSON array of role names that must have a second factor.
    mfa_required_roles  TEXT    NOT NULL,
    updated_at          INTEGER    NOT NULL,
    updated_by          TEXT    NOT NULL,
    CONSTRAINT sign_in_policy_single CHECK (policy_id = 1)
);
