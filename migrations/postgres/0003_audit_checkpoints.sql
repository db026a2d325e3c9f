-- 0003: signed checkpoints over the audit chain, the Ed25519 keys that sign them, and how
-- far each out-of-band sink has been delivered.

-- Signing keys. The secret half is sealed (ChaCha20-Poly1305) under the master key, which
-- never enters the database. Retired keys stay, so old signatures remain verifiable.
CREATE TABLE signing_key (
    signing_key_id  TEXT    PRIMARY KEY,  -- hex of the first 8 bytes of SHA-256(public key)
    purpose         TEXT    NOT NULL,     -- 'audit'
    public_key      TEXT    NOT NULL,     -- hex, 32 bytes
    sealed_secret   TEXT    NOT NULL,     -- hex: 12-byte nonce, then ciphertext and tag
    created_at      BIGINT  NOT NULL,
    retired_at      BIGINT
);
-- At most one active key per purpose, even with several replicas starting at once.
CREATE UNIQUE INDEX signing_key_one_active ON signing_key (purpose) WHERE retired_at IS NULL;

-- A signature over (seq, head hash, time, key id): everything up to `seq` is as signed.
CREATE TABLE audit_checkpoint (
    seq             BIGINT  PRIMARY KEY,
    head_hash       TEXT    NOT NULL,
    at              BIGINT  NOT NULL,
    signing_key_id  TEXT    NOT NULL,
    signature       TEXT    NOT NULL,
    CONSTRAINT audit_checkpoint_key_fk FOREIGN KEY (signing_key_id) REFERENCES signing_key (signing_key_id)
);

-- Delivery cursors of sinks that cannot be read back (a webhook).
CREATE TABLE audit_sink (
    audit_sink_id   TEXT    PRIMARY KEY,
    entry_seq       BIGINT  NOT NULL,
    checkpoint_seq  BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
