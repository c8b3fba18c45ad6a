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
CREATE TRIGGER tag_versions_tag_inheritance_insert AFTER INSERT ON tag_inheritance FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_inheritance_update AFTER UPDATE ON tag_inheritance FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_packages_insert AFTER INSERT ON tag_packages FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_packages_update AFTER UPDATE ON tag_packages FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_listing_insert AFTER INSERT ON tag_listing FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_listing_update AFTER UPDATE ON tag_listing FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_names_insert AFTER INSERT ON tag_names FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_names_update AFTER UPDATE ON tag_names FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_config_insert AFTER INSERT ON tag_config FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tag_versions_tag_config_update AFTER UPDATE ON tag_config FOR EACH ROW BEGIN
    INSERT INTO tag_versions (tag_id, n) VALUES (NEW.tag_id, 1)
        ON CONFLICT (tag_id) DO UPDATE SET n = n + 1;
END;
