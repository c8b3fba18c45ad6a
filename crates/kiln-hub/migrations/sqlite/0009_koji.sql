-- Koji's protocol (docs/koji.md) names things by integer ids that kiln
-- kept as names: packages and permissions get ids here. A package is
-- every name a build or a package list entry ever used; triggers keep the
-- table current, so the domain's writes need not know it.
CREATE TABLE packages (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT OR IGNORE INTO packages (name) SELECT name FROM builds ORDER BY id;
INSERT OR IGNORE INTO packages (name) SELECT package FROM tag_packages ORDER BY id;
CREATE TRIGGER packages_from_builds AFTER INSERT ON builds
BEGIN
    INSERT OR IGNORE INTO packages (name) VALUES (NEW.name);
END;
CREATE TRIGGER packages_from_lists AFTER INSERT ON tag_packages
BEGIN
    INSERT OR IGNORE INTO packages (name) VALUES (NEW.package);
END;
-- The permissions a user may hold, numbered as Koji numbers them (admin is 1).
CREATE TABLE permissions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL
);
INSERT INTO permissions (id, name, description) VALUES
    (1, 'admin', 'Full administrator access. Perform all actions.'),
    (2, 'tag', 'Manage tags: create, edit, delete, inheritance, package lists, tagging.'),
    (3, 'target', 'Manage build targets.'),
    (4, 'build', 'Submit builds and record their results.'),
    (5, 'image', 'Upload and remove source images.'),
    (6, 'host', 'Register builders.'),
    (7, 'pipeline', 'Manage pipelines and device channels.');
-- Sessions of Koji clients (`login`): the key's sha256, never the key; the
-- last call number, so a replayed or out-of-order call is refused.
CREATE TABLE koji_sessions (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    key_sha256 TEXT NOT NULL,
    callnum BIGINT,
    created BIGINT NOT NULL,
    renewed BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    closed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX koji_sessions_expires ON koji_sessions(expires);
