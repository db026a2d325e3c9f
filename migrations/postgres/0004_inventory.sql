-- 0004: the API inventory. An API belongs to one team; its operations come from its
-- OpenAPI document and are replaced on re-import by a diff, in place, so that rows (and
-- the settings later attached to them) of unchanged operations keep their ids.
-- Lists and documents are JSON text.

CREATE TABLE api (
    api_id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id          BIGINT  NOT NULL,
    name             TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    environment      TEXT    NOT NULL,
    version          TEXT    NOT NULL,
    lifecycle        TEXT    NOT NULL DEFAULT 'active',
    sunset_at        BIGINT,
    base_urls        TEXT    NOT NULL,
    tags             TEXT    NOT NULL,
    contacts         TEXT    NOT NULL,
    openapi_version  TEXT    NOT NULL,
    spec_digest      TEXT    NOT NULL,
    -- `components` of the document, for resolving schema references.
    components       TEXT    NOT NULL,
    -- Sorted distinct data classes over all operations.
    data_classes     TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    CONSTRAINT api_team_fk FOREIGN KEY (team_id) REFERENCES team (team_id),
    CONSTRAINT api_name_environment_key UNIQUE (name, environment),
    CONSTRAINT api_lifecycle_check CHECK (lifecycle IN ('active', 'deprecated', 'retired'))
);
CREATE INDEX api_team_idx ON api (team_id);

CREATE TABLE api_operation (
    api_operation_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    api_id            BIGINT  NOT NULL,
    method            TEXT    NOT NULL,
    path              TEXT    NOT NULL,
    operation_id      TEXT,
    summary           TEXT    NOT NULL,
    parameters        TEXT    NOT NULL,
    request_body      TEXT    NOT NULL,
    responses         TEXT    NOT NULL,
    security          TEXT    NOT NULL,
    -- Fields carrying data classes, found in the schemas.
    data_classes      TEXT    NOT NULL,
    deprecated        BIGINT  NOT NULL,
    CONSTRAINT api_operation_api_fk FOREIGN KEY (api_id) REFERENCES api (api_id) ON DELETE CASCADE,
    CONSTRAINT api_operation_method_path_key UNIQUE (api_id, method, path)
);
