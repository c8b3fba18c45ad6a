-- list-tagged reads listings from one index (package name included) and
-- fetches build details only for the builds it returns; reverse walks
-- follow children by index.
ALTER TABLE tag_listing ADD COLUMN package TEXT;
UPDATE tag_listing l SET package = b.name FROM builds b WHERE b.id = l.build_id;
CREATE INDEX tag_listing_active_tag ON tag_listing(tag_id) INCLUDE (build_id, create_event, package) WHERE revoke_event IS NULL;
CREATE INDEX tag_inheritance_children ON tag_inheritance(parent_id) WHERE revoke_event IS NULL;
