-- Login attempts counted against the failed-login limit (docs/hub.md,
-- "Users, tokens, permissions"): one row per attempt and key, the key the
-- sha256 of a user name typed or of a client address (never the name
-- itself, which may be a password typed in the wrong field). A success
-- deletes its user's rows; rows older than the window are pruned.
CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY,
    key_hash TEXT NOT NULL,
    time BIGINT NOT NULL
);
CREATE INDEX login_attempts_key ON login_attempts(key_hash, time);
CREATE INDEX login_attempts_time ON login_attempts(time);
