-- Pipelines (docs/pipelines.md): a build or update configured once and run
-- on every trigger. The configuration is versioned like a target's: one
-- `pipeline_config` row per saved version, from its event until the event
-- that replaced or deleted it. `runs` counts the pipeline's runs (`%{run}`).
CREATE TABLE pipelines (
    id INTEGER PRIMARY KEY,
    runs BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE pipeline_config (
    id INTEGER PRIMARY KEY,
    pipeline_id BIGINT NOT NULL REFERENCES pipelines(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    target_id BIGINT NOT NULL REFERENCES targets(id),
    owner_id BIGINT NOT NULL REFERENCES users(id),
    -- The source image's name when new versions of it start runs, and
    -- the image name results are imported as (for the loop check).
    chain_source TEXT,
    produces TEXT,
    config TEXT NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX pipeline_config_name ON pipeline_config(name) WHERE revoke_event IS NULL;
CREATE UNIQUE INDEX pipeline_config_active ON pipeline_config(pipeline_id) WHERE revoke_event IS NULL;
CREATE INDEX pipeline_config_pipeline ON pipeline_config(pipeline_id, create_event);
CREATE INDEX pipeline_config_chain ON pipeline_config(chain_source) WHERE revoke_event IS NULL;
CREATE INDEX pipeline_config_target ON pipeline_config(target_id) WHERE revoke_event IS NULL;
-- A hook's secret is never stored: `nonce` derives it from the hub's key
-- file, `secret_sha256` checks a presented token.
CREATE TABLE pipeline_hooks (
    id INTEGER PRIMARY KEY,
    pipeline_id BIGINT NOT NULL REFERENCES pipelines(id),
    service TEXT NOT NULL,
    nonce TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX pipeline_hooks_active ON pipeline_hooks(pipeline_id, service) WHERE revoke_event IS NULL;
CREATE INDEX pipeline_hooks_pipeline ON pipeline_hooks(pipeline_id, create_event);
-- One row per run; a hook's delivery id (or a new source's NAME@VERSION)
-- starts at most one run of a pipeline.
CREATE TABLE pipeline_runs (
    id INTEGER PRIMARY KEY,
    pipeline_id BIGINT NOT NULL REFERENCES pipelines(id),
    number BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    delivery TEXT,
    user_id BIGINT REFERENCES users(id),
    git_ref TEXT,
    commit_id TEXT,
    source TEXT,
    nvr TEXT,
    task_id BIGINT REFERENCES tasks(id),
    error TEXT,
    created BIGINT NOT NULL,
    UNIQUE (pipeline_id, number)
);
CREATE UNIQUE INDEX pipeline_runs_delivery ON pipeline_runs(pipeline_id, trigger, delivery) WHERE delivery IS NOT NULL;
CREATE INDEX pipeline_runs_task ON pipeline_runs(task_id);
-- Device channels (docs/channels.md). The signing key is never stored
-- either: `nonce` derives it from the hub's key file; the public half is
-- kept to check that the key file still matches.
CREATE TABLE channel_keys (
    id INTEGER PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    public_key TEXT NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX channel_keys_active ON channel_keys((1)) WHERE revoke_event IS NULL;
-- Every publication of a channel: the signed index exactly as served.
-- A channel is the tag's name: its sequence numbers never repeat under
-- that name, even across a tag deleted and made again, or renamed.
CREATE TABLE channel_indexes (
    id INTEGER PRIMARY KEY,
    tag_id BIGINT NOT NULL REFERENCES tags(id),
    channel TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    event BIGINT NOT NULL,
    time BIGINT NOT NULL,
    content_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    signature TEXT NOT NULL,
    images BIGINT NOT NULL,
    UNIQUE (channel, sequence)
);
CREATE INDEX channel_indexes_tag ON channel_indexes(tag_id, sequence);
-- Tags that publish their channel automatically are found by their extra.
CREATE INDEX tag_extra_key ON tag_extra(key) WHERE revoke_event IS NULL;
