-- The read cache's versions (ARCHITECTURE.md, "The read cache"): a counter
-- per tag that every change to the rows a tag's listing is computed from
-- raises in the change's own transaction: its inheritance links, package
-- list, listings and name. A cached answer keeps the sum of the counters of
-- the tags in its walk; it is current while that sum is, so every hub on
-- the database sees a change as soon as it commits.
CREATE TABLE tag_versions (
    tag_id BIGINT PRIMARY KEY REFERENCES tags(id),
    n BIGINT NOT NULL
);
CREATE FUNCTION tag_versions_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = tag_versions.n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER tag_versions_inheritance AFTER INSERT OR UPDATE ON tag_inheritance
    FOR EACH ROW EXECUTE FUNCTION tag_versions_bump();
CREATE TRIGGER tag_versions_packages AFTER INSERT OR UPDATE ON tag_packages
    FOR EACH ROW EXECUTE FUNCTION tag_versions_bump();
CREATE TRIGGER tag_versions_listing AFTER INSERT OR UPDATE ON tag_listing
    FOR EACH ROW EXECUTE FUNCTION tag_versions_bump();
CREATE TRIGGER tag_versions_names AFTER INSERT OR UPDATE ON tag_names
    FOR EACH ROW EXECUTE FUNCTION tag_versions_bump();
CREATE TRIGGER tag_versions_config AFTER INSERT OR UPDATE ON tag_config
    FOR EACH ROW EXECUTE FUNCTION tag_versions_bump();
