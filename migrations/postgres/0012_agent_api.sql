-- 0012: the agent API. What each agent last reported (heartbeat), the nonces of its
-- signed calls (a captured call cannot be replayed), when it first ran each revision
-- (fleet convergence), the decisions it uploads, and a generation counter that every
-- change to bundles or pins, and every agent revocation, bumps and announces on the
-- `palisade_bundles` channel, so
-- every replica hears of it (LISTEN/NOTIFY, delivered at commit).

ALTER TABLE agent ADD COLUMN active_revision BIGINT;
ALTER TABLE agent ADD COLUMN bundle_hash TEXT;
ALTER TABLE agent ADD COLUMN last_error TEXT;
ALTER TABLE agent ADD COLUMN uptime_seconds BIGINT;
-- JSON object: allowed, denied, monitored, errors.
ALTER TABLE agent ADD COLUMN counters TEXT;
ALTER TABLE agent ADD COLUMN spooled_decisions BIGINT;
ALTER TABLE agent ADD COLUMN status_at BIGINT;

CREATE TABLE agent_nonce (
    agent_id  BIGINT NOT NULL,
    nonce     TEXT   NOT NULL,
    seen_at   BIGINT NOT NULL,
    CONSTRAINT agent_nonce_pk PRIMARY KEY (agent_id, nonce)
);
CREATE INDEX agent_nonce_seen_idx ON agent_nonce (seen_at);

CREATE TABLE agent_activation (
    agent_id      BIGINT NOT NULL,
    revision      BIGINT NOT NULL,
    activated_at  BIGINT NOT NULL,
    CONSTRAINT agent_activation_pk PRIMARY KEY (agent_id, revision),
    CONSTRAINT agent_activation_agent_fk FOREIGN KEY (agent_id) REFERENCES agent (agent_id)
);
CREATE INDEX agent_activation_revision_idx ON agent_activation (revision);

CREATE TABLE decision_log (
    decision_log_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id         BIGINT NOT NULL,
    -- The agent's own id for the record: an upload repeated after a crash stores it once.
    record_id        TEXT   NOT NULL,
    decided_at       BIGINT NOT NULL,
    received_at      BIGINT NOT NULL,
    revision         BIGINT,
    method           TEXT   NOT NULL,
    path             TEXT   NOT NULL,
    api_id           BIGINT,
    operation_id     BIGINT,
    outcome          TEXT   NOT NULL,
    status           BIGINT NOT NULL,
    reason           TEXT,
    source           TEXT   NOT NULL,
    caller           TEXT,
    decision_micros  BIGINT NOT NULL,
    CONSTRAINT decision_log_record_key UNIQUE (agent_id, record_id),
    CONSTRAINT decision_log_agent_fk FOREIGN KEY (agent_id) REFERENCES agent (agent_id)
);
CREATE INDEX decision_log_decided_idx ON decision_log (decided_at);

CREATE TABLE bundle_generation (
    only_row    BIGINT NOT NULL PRIMARY KEY CHECK (only_row = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO bundle_generation (only_row, generation) VALUES (1, 0);

CREATE FUNCTION palisade_bundles_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bundle_generation SET generation = generation + 1;
    PERFORM pg_notify('palisade_bundles', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER bundle_changed AFTER INSERT OR UPDATE OR DELETE ON bundle
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_bundles_changed();
CREATE TRIGGER bundle_pin_changed AFTER INSERT OR UPDATE OR DELETE ON bundle_pin
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_bundles_changed();
CREATE TRIGGER agent_revoked AFTER UPDATE OF revoked_at ON agent
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_bundles_changed();
