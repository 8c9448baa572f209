-- syncd monitoring queries. `syncd report` runs each one and prints it as a table;
-- psql users can run this file as is: psql "$DATABASE_URL" -f syncd/sql/report.sql

-- name: writes_last_24h
-- Rows syncd created, updated (after their creation) and soft-deleted in the last 24 hours,
-- by content type.
SELECT c.content_type,
       count(*) FILTER (WHERE c.created_at > now() - interval '24 hours') AS created,
       count(*) FILTER (WHERE c.updated_at > now() - interval '24 hours'
                          AND c.updated_at > c.created_at) AS updated,
       count(*) FILTER (WHERE c.deleted_at > now() - interval '24 hours') AS soft_deleted
FROM public.contents c JOIN syncd.rows r ON r.content_id = c.id
GROUP BY c.content_type ORDER BY c.content_type;

-- name: hierarchy_problems
-- Live rows whose place in outline -> module -> lesson is wrong.
SELECT 'lesson without a module or outline parent' AS problem, count(*) AS rows
FROM public.contents l LEFT JOIN public.contents p ON p.id = l.parent_content_id
WHERE l.content_type = 'course_lesson' AND l.deleted_at IS NULL
  AND (p.id IS NULL OR p.content_type NOT IN ('course_module', 'course_outline'))
UNION ALL
SELECT 'module without an outline parent', count(*)
FROM public.contents m LEFT JOIN public.contents p ON p.id = m.parent_content_id
WHERE m.content_type = 'course_module' AND m.deleted_at IS NULL
  AND (p.id IS NULL OR p.content_type <> 'course_outline')
UNION ALL
SELECT 'live row under a soft-deleted parent', count(*)
FROM public.contents c JOIN public.contents p ON p.id = c.parent_content_id
WHERE c.deleted_at IS NULL AND p.deleted_at IS NOT NULL
UNION ALL
SELECT 'row in another project than its parent', count(*)
FROM public.contents c JOIN public.contents p ON p.id = c.parent_content_id
WHERE c.deleted_at IS NULL AND c.project_id IS DISTINCT FROM p.project_id
UNION ALL
SELECT 'live course project without an outline', count(*)
FROM public.content_projects pr
WHERE pr.project_type = 'course' AND pr.status <> 'archived'
  AND NOT EXISTS (SELECT 1 FROM public.contents o WHERE o.project_id = pr.id
                  AND o.content_type = 'course_outline' AND o.deleted_at IS NULL);

-- name: data_quality
-- Live lessons with empty content, missing fidelity, or repaired legacy text.
SELECT p.slug AS project,
       count(*) AS lessons,
       count(*) FILTER (WHERE coalesce(btrim(c.content), '') = '') AS empty_content,
       count(*) FILTER (WHERE c.fidelity_score IS NULL) AS missing_fidelity,
       count(*) FILTER (WHERE c.metadata ? 'encoding') AS repaired_encoding,
       count(*) FILTER (WHERE c.status = 'published') AS published
FROM public.contents c JOIN public.content_projects p ON p.id = c.project_id
WHERE c.content_type = 'course_lesson' AND c.deleted_at IS NULL
GROUP BY p.slug ORDER BY p.slug;

-- name: rls_status
-- Row-level security per CreatorOS table, with its policy count.
SELECT c.relname AS "table", c.relrowsecurity AS rls_enabled, c.relforcerowsecurity AS rls_forced,
       (SELECT count(*) FROM pg_policies p
        WHERE p.schemaname = 'public' AND p.tablename = c.relname) AS policies
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
  AND c.relname IN ('content_projects', 'contents', 'audience_profiles', 'content_minds', 'content_tags')
ORDER BY c.relname;

-- name: mind_attribution
-- How many projects and contents are linked to their creator and persona minds.
SELECT count(*) AS projects,
       count(*) FILTER (WHERE creator_mind_id IS NOT NULL) AS with_creator,
       count(*) FILTER (WHERE persona_mind_id IS NOT NULL) AS with_persona,
       count(*) FILTER (WHERE creator_mind_id IS NULL AND persona_mind_id IS NULL) AS unattributed,
       (SELECT count(DISTINCT content_id) FROM public.content_minds) AS contents_with_minds,
       (SELECT count(*) FROM public.minds) AS minds
FROM public.content_projects;

-- name: skipped_folders
-- Folders under the root that are not courses but hold files (as the last full reconcile saw them).
SELECT folder, files, seen_at FROM syncd.skipped_folders ORDER BY folder;

-- name: sources
-- Every syncd that writes into this database: its root and host, when it last reconciled,
-- the live courses it owns, the settings that shape its rows (as its writer recorded them).
SELECT s.name AS source, s.root, s.host, s.last_seen, s.retired_at, s.settings,
       count(c.course) FILTER (WHERE c.archived_at IS NULL) AS courses
FROM syncd.sources s LEFT JOIN syncd.courses c ON c.source = s.name
GROUP BY s.name ORDER BY s.name;

-- name: source_conflicts
-- Course folders a source holds that another source owns (the owner keeps them).
SELECT course, source, owner, seen_at FROM syncd.conflicts ORDER BY course, source;
