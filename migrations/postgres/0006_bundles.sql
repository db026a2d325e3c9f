-- 0006: policy bundles. Each row is one revision: compiled from the inventory, signed
-- with the bundle key, kept as the exact signed bytes agents receive. A draft becomes
-- active when published (with who and why); a rollback is a new revision re-issuing an
-- older one's policy. Revisions only grow, so agents can refuse anything older.

CREATE TABLE bundle (
    revision        BIGINT  PRIMARY KEY,
    created_at      BIGINT  NOT NULL,
    created_by      TEXT    NOT NULL,
    content_hash    TEXT    NOT NULL,
    signing_key_id  TEXT    NOT NULL,
    -- Agent labels the bundle is meant for (JSON object); {} is every agent.
    target          TEXT    NOT NULL,
    rollback_of     BIGINT,
    -- Route and API counts, for listings.
    summary         TEXT    NOT NULL,
    signed          TEXT    NOT NULL,
    published_at    BIGINT,
    published_by    TEXT,
    reason          TEXT,
    CONSTRAINT bundle_key_fk FOREIGN KEY (signing_key_id) REFERENCES signing_key (signing_key_id),
    CONSTRAINT bundle_published_check CHECK ((published_at IS NULL) = (reason IS NULL))
);
CREATE INDEX bundle_published_idx ON bundle (published_at);
