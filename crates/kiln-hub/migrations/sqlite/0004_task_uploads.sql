-- Files a builder uploads for a task attempt (docs/hub.md, "Builders and
-- tasks"). A row exists
-- before its bytes are stored, so a blob is always referenced while it is
-- written. Completing a build moves the rows into `artifacts`; rows of
-- attempts that ended otherwise are swept with their unreferenced blobs.
CREATE TABLE task_uploads (
    id INTEGER PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks(id),
    attempt BIGINT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    store_key TEXT NOT NULL,
    stored BOOLEAN NOT NULL,
    UNIQUE (task_id, attempt, file)
);
CREATE INDEX task_uploads_key ON task_uploads(store_key);
CREATE INDEX artifacts_key ON artifacts(store_key);
CREATE INDEX images_key ON images(store_key);
CREATE INDEX builds_task ON builds(task_id);
