-- Queries of source administration (syncd/sources.py), loaded by name (the text after
-- "-- name:").

-- name: touch_source
-- this source seen now, with the settings it writes with (a retired source's are kept); the
-- settings recorded before, so that a change is said
WITH before AS (SELECT settings FROM syncd.sources WHERE name = %(name)s)
INSERT INTO syncd.sources AS s (name, root, host, settings)
VALUES (%(name)s, %(root)s, %(host)s, %(settings)s)
ON CONFLICT (name) DO UPDATE SET root = EXCLUDED.root, host = EXCLUDED.host, last_seen = now(),
    settings = CASE WHEN s.retired_at IS NULL THEN EXCLUDED.settings ELSE s.settings END
RETURNING s.retired_at, (SELECT settings FROM before) AS settings_before;

-- name: source_settings
SELECT settings FROM syncd.sources WHERE name = %(name)s;

-- name: list_sources
SELECT s.name, s.root, s.host, s.last_seen, s.retired_at, s.settings,
       count(c.course) FILTER (WHERE c.archived_at IS NULL) AS courses
FROM syncd.sources s LEFT JOIN syncd.courses c ON c.source = s.name
GROUP BY s.name ORDER BY s.name;

-- name: source_courses
SELECT course FROM syncd.courses WHERE source = %(name)s AND archived_at IS NULL ORDER BY course;

-- name: retire_source
UPDATE syncd.sources SET retired_at = now() WHERE name = %(name)s AND retired_at IS NULL
RETURNING name;

-- name: hand_over
UPDATE syncd.courses SET source = %(to)s WHERE source = %(name)s RETURNING course;

-- name: source_exists
SELECT retired_at IS NOT NULL AS retired FROM syncd.sources WHERE name = %(name)s;
