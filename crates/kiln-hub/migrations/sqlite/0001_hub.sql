-- kiln hub schema (SQLite). Versioned rows live from create_event until
-- revoke_event (NULL: active), as in Koji.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time BIGINT NOT NULL,
    user_id BIGINT,
    action TEXT NOT NULL
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    kind TEXT NOT NULL DEFAULT 'user',
    created BIGINT NOT NULL
);
CREATE TABLE user_perms (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    perm TEXT NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX user_perms_active ON user_perms(user_id, perm) WHERE revoke_event IS NULL;
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT,
    revoked BIGINT
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE TABLE tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE tag_config (
    id INTEGER PRIMARY KEY,
    tag_id BIGINT NOT NULL REFERENCES tags(id),
    arches TEXT,
    perm TEXT,
    locked BOOLEAN NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX tag_config_active ON tag_config(tag_id) WHERE revoke_event IS NULL;
CREATE INDEX tag_config_tag ON tag_config(tag_id, create_event);
CREATE TABLE tag_extra (
    id INTEGER PRIMARY KEY,
    tag_id BIGINT NOT NULL REFERENCES tags(id),
    key TEXT NOT NULL,
    value TEXT,
    blocked BOOLEAN NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX tag_extra_active ON tag_extra(tag_id, key) WHERE revoke_event IS NULL;
CREATE INDEX tag_extra_tag ON tag_extra(tag_id, create_event);
CREATE TABLE tag_inheritance (
    id INTEGER PRIMARY KEY,
    tag_id BIGINT NOT NULL REFERENCES tags(id),
    parent_id BIGINT NOT NULL REFERENCES tags(id),
    priority BIGINT NOT NULL,
    maxdepth BIGINT,
    intransitive BOOLEAN NOT NULL,
    noconfig BOOLEAN NOT NULL,
    pkg_filter TEXT NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX tag_inheritance_priority ON tag_inheritance(tag_id, priority) WHERE revoke_event IS NULL;
CREATE UNIQUE INDEX tag_inheritance_parent ON tag_inheritance(tag_id, parent_id) WHERE revoke_event IS NULL;
CREATE INDEX tag_inheritance_events ON tag_inheritance(create_event, revoke_event);
CREATE TABLE tag_packages (
    id INTEGER PRIMARY KEY,
    tag_id BIGINT NOT NULL REFERENCES tags(id),
    package TEXT NOT NULL,
    owner TEXT NOT NULL,
    blocked BOOLEAN NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX tag_packages_active ON tag_packages(tag_id, package) WHERE revoke_event IS NULL;
CREATE INDEX tag_packages_tag ON tag_packages(tag_id, create_event);
CREATE TABLE builds (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    release TEXT NOT NULL,
    nvr TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    owner_id BIGINT NOT NULL REFERENCES users(id),
    task_id BIGINT,
    start_time BIGINT NOT NULL,
    completion_time BIGINT,
    manifest TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX builds_name ON builds(name);
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    build_id BIGINT NOT NULL REFERENCES builds(id),
    file TEXT NOT NULL,
    format TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    store_key TEXT,
    UNIQUE (build_id, file)
);
CREATE TABLE tag_listing (
    id INTEGER PRIMARY KEY,
    tag_id BIGINT NOT NULL REFERENCES tags(id),
    build_id BIGINT NOT NULL REFERENCES builds(id),
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX tag_listing_active ON tag_listing(tag_id, build_id) WHERE revoke_event IS NULL;
CREATE INDEX tag_listing_tag ON tag_listing(tag_id, create_event);
CREATE INDEX tag_listing_build ON tag_listing(build_id);
CREATE TABLE targets (
    id INTEGER PRIMARY KEY
);
CREATE TABLE target_config (
    id INTEGER PRIMARY KEY,
    target_id BIGINT NOT NULL REFERENCES targets(id),
    name TEXT NOT NULL,
    build_tag BIGINT NOT NULL REFERENCES tags(id),
    dest_tag BIGINT NOT NULL REFERENCES tags(id),
    macros TEXT NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
CREATE UNIQUE INDEX target_config_name ON target_config(name) WHERE revoke_event IS NULL;
CREATE UNIQUE INDEX target_config_active ON target_config(target_id) WHERE revoke_event IS NULL;
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    format TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    store_key TEXT NOT NULL,
    uploader_id BIGINT NOT NULL REFERENCES users(id),
    time BIGINT NOT NULL,
    UNIQUE (name, version)
);
