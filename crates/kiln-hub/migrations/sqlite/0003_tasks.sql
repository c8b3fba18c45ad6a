-- The build farm (docs/hub.md, "Builders and tasks"): builders registered as hosts, and tasks they claim.
CREATE TABLE hosts (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL UNIQUE REFERENCES users(id),
    name TEXT NOT NULL UNIQUE,
    arch TEXT NOT NULL,
    channels TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    enabled BOOLEAN NOT NULL,
    last_seen BIGINT
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL,
    state TEXT NOT NULL,
    priority BIGINT NOT NULL,
    channel TEXT NOT NULL,
    arch TEXT NOT NULL,
    owner_id BIGINT NOT NULL REFERENCES users(id),
    parent_id BIGINT REFERENCES tasks(id),
    host_id BIGINT REFERENCES hosts(id),
    designated_host BIGINT REFERENCES hosts(id),
    request TEXT NOT NULL,
    result TEXT,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    lease_expires BIGINT,
    created BIGINT NOT NULL,
    started BIGINT,
    finished BIGINT
);
CREATE INDEX tasks_free ON tasks(priority, id) WHERE state = 'FREE';
CREATE INDEX tasks_open ON tasks(host_id) WHERE state = 'OPEN';
CREATE INDEX tasks_leases ON tasks(lease_expires) WHERE state = 'OPEN';
CREATE INDEX tasks_parent ON tasks(parent_id);
CREATE TABLE task_logs (
    id INTEGER PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks(id),
    data TEXT NOT NULL
);
CREATE INDEX task_logs_task ON task_logs(task_id, id);
