-- 0012: the agent API. What each agent last reported (heartbeat), the nonces of its
-- signed calls (a captured call cannot be replayed), when it first ran each revision
-- (fleet convergence), the decisions it uploads, and a generation counter that every
-- change to bundles or pins, and every agent revocation, bumps, so the control plane
-- notices what agents must hear of.

ALTER TABLE agent ADD COLUMN active_revision INTEGER;
ALTER TABLE agent ADD COLUMN bundle_hash TEXT;
ALTER TABLE agent ADD COLUMN last_error TEXT;
ALTER TABLE agent ADD COLUMN uptime_seconds INTEGER;
-- JSON object: allowed, denied, monitored, errors.
ALTER TABLE agent ADD COLUMN counters TEXT;
ALTER TABLE agent ADD COLUMN spooled_decisions INTEGER;
ALTER TABLE agent ADD COLUMN status_at INTEGER;

CREATE TABLE agent_nonce (
    agent_id  INTEGER NOT NULL,
    nonce     TEXT    NOT NULL,
    seen_at   INTEGER NOT NULL,
    CONSTRAINT agent_nonce_pk PRIMARY KEY (agent_id, nonce)
);
CREATE INDEX agent_nonce_seen_idx ON agent_nonce (seen_at);

CREATE TABLE agent_activation (
    agent_id      INTEGER NOT NULL,
    revision      INTEGER NOT NULL,
    activated_at  INTEGER NOT NULL,
    CONSTRAINT agent_activation_pk PRIMARY KEY (agent_id, revision),
    CONSTRAINT agent_activation_agent_fk FOREIGN KEY (agent_id) REFERENCES agent (agent_id)
);
CREATE INDEX agent_activation_revision_idx ON agent_activation (revision);

CREATE TABLE decision_log (
    decision_log_id  INTEGER PRIMARY KEY,
    agent_id         INTEGER NOT NULL,
    -- The agent's own id for the record: an upload repeated after a crash stores it once.
    record_id        TEXT    NOT NULL,
    decided_at       INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    revision         INTEGER,
    method           TEXT    NOT NULL,
    path             TEXT    NOT NULL,
    api_id           INTEGER,
    operation_id     INTEGER,
    outcome          TEXT    NOT NULL,
    status           INTEGER NOT NULL,
    reason           TEXT,
    source           TEXT    NOT NULL,
    caller           TEXT,
    decision_micros  INTEGER NOT NULL,
    CONSTRAINT decision_log_record_key UNIQUE (agent_id, record_id),
    CONSTRAINT decision_log_agent_fk FOREIGN KEY (agent_id) REFERENCES agent (agent_id)
);
CREATE INDEX decision_log_decided_idx ON decision_log (decided_at);

CREATE TABLE bundle_generation (
    only_row    INTEGER NOT NULL PRIMARY KEY CHECK (only_row = 1),
    generation  INTEGER NOT NULL
);
INSERT INTO bundle_generation (only_row, generation) VALUES (1, 0);

CREATE TRIGGER bundle_inserted AFTER INSERT ON bundle
BEGIN UPDATE bundle_generation SET generation = generation + 1; END;
CREATE TRIGGER bundle_updated AFTER UPDATE ON bundle
BEGIN UPDATE bundle_generation SET generation = generation + 1; END;
CREATE TRIGGER bundle_pin_inserted AFTER INSERT ON bundle_pin
BEGIN UPDATE bundle_generation SET generation = generation + 1; END;
CREATE TRIGGER bundle_pin_updated AFTER UPDATE ON bundle_pin
BEGIN UPDATE bundle_generation SET generation = generation + 1; END;
CREATE TRIGGER bundle_pin_deleted AFTER DELETE ON bundle_pin
BEGIN UPDATE bundle_generation SET generation = generation + 1; END;
CREATE TRIGGER agent_revoked AFTER UPDATE OF revoked_at ON agent
BEGIN UPDATE bundle_generation SET generation = generation + 1; END;
