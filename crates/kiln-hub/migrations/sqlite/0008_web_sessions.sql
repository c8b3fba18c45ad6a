-- Web sessions (docs/web.md): a browser's login. The cookie carries a
-- random token; the database keeps its sha256, never the token, with the
-- session's CSRF token and when it expires.
CREATE TABLE web_sessions (
    id INTEGER PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions(expires);
