-- A tag's name is versioned like the rest of the tag: a `tag_names` row
-- lives from the event that gave the tag its name (creation, rename) until
-- the event that took it away (deletion, rename), so reads as of an event
-- find the tag that had the name then, and a deleted tag's name may be
-- taken by a new tag (docs/hub.md, "Versioned data").
CREATE TABLE tag_names (
    id INTEGER PRIMARY KEY,
    tag_id BIGINT NOT NULL REFERENCES tags(id),
    name TEXT NOT NULL,
    create_event BIGINT NOT NULL REFERENCES events(id),
    revoke_event BIGINT REFERENCES events(id)
);
-- Each tag's last name until now: a deleted tag's `tags.name` was
-- `NAME#deleted-ID` (names never contain `#`). A tag had its name from its
-- first configuration, a deleted tag until its configuration was revoked.
-- Renames were not recorded: when two tags had the same last name, the one
-- whose name outlived the other's gets it only from the other's deletion,
-- so no two tags ever hold a name at the same event.
WITH life AS (
    SELECT t.id AS tag_id,
           CASE WHEN instr(t.name, '#') > 0 THEN substr(t.name, 1, instr(t.name, '#') - 1) ELSE t.name END AS name,
           MIN(c.create_event) AS born,
           CASE WHEN COUNT(c.revoke_event) = COUNT(*) THEN MAX(c.revoke_event) END AS died
    FROM tags t JOIN tag_config c ON c.tag_id = t.id
    GROUP BY t.id, t.name
)
INSERT INTO tag_names (tag_id, name, create_event, revoke_event)
SELECT l.tag_id, l.name,
       MAX(l.born, COALESCE((SELECT MAX(o.died) FROM life o
                             WHERE o.name = l.name AND o.tag_id <> l.tag_id
                               AND (l.died IS NULL OR o.died < l.died)), l.born)),
       l.died
FROM life l
ORDER BY l.tag_id;
-- A name belongs to one tag at a time, a tag has one name at a time; the
-- others serve lookups by name and by tag as of an event.
CREATE UNIQUE INDEX tag_names_active ON tag_names(name) WHERE revoke_event IS NULL;
CREATE UNIQUE INDEX tag_names_tag_active ON tag_names(tag_id) WHERE revoke_event IS NULL;
CREATE INDEX tag_names_name ON tag_names(name, create_event);
CREATE INDEX tag_names_tag ON tag_names(tag_id, create_event);
-- `tags` now only gives ids. Its unique `name` column (SQLite cannot drop
-- it without rebuilding the table) becomes `slot`, a placeholder that
-- means nothing: `#` and the id.
ALTER TABLE tags RENAME COLUMN name TO slot;
UPDATE tags SET slot = '#' || id;
