-- 0007: canaries, promotions, pins and key announcements. Every bundle that carries an
-- earlier revision's policy (a rollback, a promotion, a pin, a key announcement) is a new
-- revision with its origin, so agents, which refuse older revisions, still take it.

ALTER TABLE bundle RENAME COLUMN rollback_of TO reissue_of;
-- compiled | rollback | promotion | pin | key_announcement
ALTER TABLE bundle ADD COLUMN origin TEXT NOT NULL DEFAULT 'compiled';
UPDATE bundle SET origin = 'rollback' WHERE reissue_of IS NOT NULL;

-- A label group held on a revision whatever is published later, until unpinned. The
-- labels are a canonical JSON object (sorted keys), so one group has one pin.
CREATE TABLE bundle_pin (
    pin_id      BIGSERIAL PRIMARY KEY,
    labels      TEXT    NOT NULL,
    -- The re-issue agents of the group take, and the revision whose policy it carries.
    revision    BIGINT    NOT NULL,
    pinned_to   BIGINT    NOT NULL,
    created_at  BIGINT    NOT NULL,
    created_by  TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    CONSTRAINT bundle_pin_labels_key UNIQUE (labels),
    CONSTRAINT bundle_pin_revision_fk FOREIGN KEY (revision) REFERENCES bundle (revision),
    CONSTRAINT bundle_pin_pinned_fk FOREIGN KEY (pinned_to) REFERENCES bundle (revision)
);
