-- Queries of the course writer, loaded by name (the text after "-- name:").

-- name: lock_course
SELECT pg_advisory_xact_lock(hashtextextended('syncd:course:' || %(course)s, 0));

-- name: course_fingerprints
-- archived: by syncd (its folder vanished); a project archived in the app is not.
SELECT c.course, c.fingerprint, c.archived_at IS NOT NULL AS archived, c.stat_fingerprint,
       c.source, coalesce(s.retired_at IS NOT NULL, false) AS owner_retired, p.slug
FROM syncd.courses c LEFT JOIN syncd.sources s ON s.name = c.source
LEFT JOIN public.content_projects p ON p.id = c.project_id;

-- name: course_owner
-- the sources of this course folder's name, and of any course holding its project slug
SELECT c.source, coalesce(s.retired_at IS NOT NULL, false) AS owner_retired
FROM syncd.courses c LEFT JOIN syncd.sources s ON s.name = c.source
LEFT JOIN public.content_projects p ON p.id = c.project_id
WHERE c.course = %(course)s OR p.slug = %(slug)s;

-- name: save_conflicts
-- the courses this source found owned by another one, replacing its previous list
WITH gone AS (
    DELETE FROM syncd.conflicts
    WHERE source = %(source)s AND NOT (course = ANY(%(courses)s::text[]))
)
INSERT INTO syncd.conflicts (course, source, owner, seen_at)
SELECT d.c, %(source)s, d.o, now() FROM unnest(%(courses)s::text[], %(owners)s::text[]) AS d(c, o)
ON CONFLICT (course, source) DO UPDATE SET owner = EXCLUDED.owner, seen_at = EXCLUDED.seen_at;

-- name: insert_minds
INSERT INTO public.minds (slug, display_name)
SELECT * FROM unnest(%(slugs)s::text[], %(names)s::text[])
ON CONFLICT (slug) DO NOTHING;

-- name: mind_ids
SELECT slug, id FROM public.minds WHERE slug = ANY(%(slugs)s::text[]);

-- name: upsert_audience
-- A profile of that slug owned by another mind than the course's creator is that mind's:
-- never rewritten (nor linked, see upsert_project and audience_held).
INSERT INTO public.audience_profiles AS a (slug, name, description, technical_level)
VALUES (%(slug)s, %(name)s, %(description)s, %(technical_level)s)
ON CONFLICT (slug) DO UPDATE
SET name = EXCLUDED.name, description = EXCLUDED.description,
    technical_level = EXCLUDED.technical_level
WHERE (a.owner_mind_id IS NULL
       OR a.owner_mind_id = (SELECT id FROM public.minds WHERE slug = %(creator)s))
  AND (a.name, a.description, a.technical_level)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.description, EXCLUDED.technical_level);

-- name: audience_held
-- the mind that owns the audience profile of the brief's slug, when that is another mind
-- than the course's creator (no row: the profile is free, or the creator's, or syncd's)
SELECT coalesce(m.slug, '?') AS owner
FROM public.audience_profiles a LEFT JOIN public.minds m ON m.id = a.owner_mind_id
WHERE a.slug = %(audience)s AND a.owner_mind_id IS NOT NULL
  AND a.owner_mind_id IS DISTINCT FROM (SELECT id FROM public.minds WHERE slug = %(creator)s);

-- name: upsert_project
-- Mind and audience ids by slug, and the status to restore when an archived folder
-- returns, are looked up inside the statement: no round trip waits for them. A project of
-- that slug is taken only when it is this course's (syncd.courses), or has no creator
-- (made before syncd, by a privileged role), or the course's creator made it; another
-- creator's is left alone (project_minds says so). The same for the audience profile.
INSERT INTO public.content_projects AS p
    (slug, name, description, project_type, project_metadata,
     creator_mind_id, persona_mind_id, target_audience_id)
VALUES (%(slug)s, %(name)s, %(description)s, %(project_type)s, %(metadata)s,
        (SELECT id FROM public.minds WHERE slug = %(creator)s),
        (SELECT id FROM public.minds WHERE slug = %(persona)s),
        (SELECT a.id FROM public.audience_profiles a WHERE a.slug = %(audience)s
           AND (a.owner_mind_id IS NULL
                OR a.owner_mind_id = (SELECT id FROM public.minds WHERE slug = %(creator)s))))
ON CONFLICT (slug) DO UPDATE
SET name = EXCLUDED.name, description = EXCLUDED.description,
    project_type = EXCLUDED.project_type, project_metadata = EXCLUDED.project_metadata,
    creator_mind_id = EXCLUDED.creator_mind_id, persona_mind_id = EXCLUDED.persona_mind_id,
    target_audience_id = EXCLUDED.target_audience_id,
    -- syncd's own archive is undone, to exactly the status it had; one made in the app stays
    status = CASE WHEN p.status = 'archived' AND EXISTS (
                      SELECT 1 FROM syncd.courses WHERE course = %(course)s AND archived_at IS NOT NULL)
                  THEN coalesce((SELECT status_before_archive FROM syncd.courses
                                 WHERE course = %(course)s), 'in_progress')
                  ELSE p.status END
WHERE (EXISTS (SELECT 1 FROM syncd.courses WHERE course = %(course)s AND project_id = p.id)
       OR p.creator_mind_id IS NULL OR p.creator_mind_id = EXCLUDED.creator_mind_id)
  AND (p.name, p.description, p.project_type, p.project_metadata, p.creator_mind_id,
       p.persona_mind_id, p.target_audience_id,
       p.status = 'archived' AND EXISTS (
           SELECT 1 FROM syncd.courses WHERE course = %(course)s AND archived_at IS NOT NULL))
      IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.description, EXCLUDED.project_type, EXCLUDED.project_metadata,
       EXCLUDED.creator_mind_id, EXCLUDED.persona_mind_id, EXCLUDED.target_audience_id, false)
RETURNING id;

-- name: project_minds
-- held: another creator's project, which syncd never takes (see upsert_project); holder:
-- the slug of its creator mind
SELECT p.id, p.creator_mind_id, p.persona_mind_id, m.slug AS holder,
       NOT (EXISTS (SELECT 1 FROM syncd.courses k
                    WHERE k.course = %(course)s AND k.project_id = p.id)
            OR p.creator_mind_id IS NULL
            OR coalesce(m.slug = %(creator)s, false)) AS held
FROM public.content_projects p LEFT JOIN public.minds m ON m.id = p.creator_mind_id
WHERE p.slug = %(slug)s;

-- name: existing_rows
-- changed: written by someone else since syncd wrote it (its xmin moved on). The values
-- syncd owns are read when asked (verify) and for changed rows (a real difference, or only
-- bookkeeping?); tag and mind links always (one deleted or added in SQL is written again).
SELECT c.id, c.slug, c.file_path, c.content_type, c.sequence_order,
       c.parent_content_id AS parent_id, c.deleted_at IS NOT NULL AS deleted, r.row_key,
       r.row_hash, r.fm_status, x.changed, r.source_hash, x.read AS has_fields,
       CASE WHEN x.read THEN c.title END AS title,
       CASE WHEN x.read THEN md5(c.content) END AS content_md5,
       CASE WHEN x.read THEN c.metadata END AS metadata,
       CASE WHEN x.read THEN c.fidelity_score END AS fidelity_score,
       CASE WHEN x.read THEN c.status END AS status,
       c.project_id IS NOT NULL AS in_project,
       ARRAY(SELECT g.name FROM public.content_tags t JOIN public.tags g ON g.id = t.tag_id
             WHERE t.content_id = c.id) AS tags,
       ARRAY(SELECT m.mind_id::text || ' ' || coalesce(m.role, '') FROM public.content_minds m
             WHERE m.content_id = c.id) AS minds
FROM public.contents c
LEFT JOIN syncd.rows r ON r.content_id = c.id
CROSS JOIN LATERAL (SELECT coalesce(c.xmin::text <> r.written_xmin::text, false) AS changed) w
CROSS JOIN LATERAL (SELECT %(with_fields)s OR w.changed AS read, w.changed) x
WHERE c.project_id = (SELECT id FROM public.content_projects WHERE slug = %(slug)s)
   OR (c.file_path IS NULL AND c.project_id IS NULL AND c.slug = ANY(%(legacy_slugs)s::text[]));

-- name: project_state
-- what the project row and the audience row of the brief's audience slug hold now (verify;
-- and before a sync writes them, to name what it repairs); changed: by someone else since
-- syncd wrote them (their xmin moved on)
SELECT p.id, p.name, p.description, p.project_type, p.project_metadata AS metadata,
       cm.slug AS creator, pm.slug AS persona, la.slug AS audience,
       a.name AS audience_name, a.description AS audience_description,
       a.technical_level AS audience_technical_level,
       coalesce(p.xmin::text <> k.project_xmin::text, false)
       OR (k.project_xmin IS NOT NULL
           AND coalesce(la.xmin::text, '') <> coalesce(k.audience_xmin::text, '')) AS changed
FROM public.content_projects p
LEFT JOIN public.minds cm ON cm.id = p.creator_mind_id
LEFT JOIN public.minds pm ON pm.id = p.persona_mind_id
LEFT JOIN public.audience_profiles la ON la.id = p.target_audience_id
LEFT JOIN public.audience_profiles a ON a.slug = %(audience)s
LEFT JOIN syncd.courses k ON k.project_id = p.id AND k.course = %(course)s
WHERE p.slug = %(slug)s;

-- name: slug_holders
-- the rows, of any project, holding slugs a new row of the course would take; syncd: a
-- syncd wrote it (its bookkeeping says so), so its slug is its own
SELECT c.slug, c.id, EXISTS (SELECT 1 FROM syncd.rows r WHERE r.content_id = c.id) AS syncd
FROM public.contents c WHERE c.slug = ANY(%(slugs)s::text[]);

-- name: reclaim_slugs
-- slugs of syncd's namespace (<course>--...) taken back from rows no syncd wrote, for the
-- course's new rows: each holder keeps everything but its slug (a new one, random, also in
-- syncd's namespace so that nobody else can take it first), and is recorded
WITH taken AS (
    UPDATE public.contents c
    SET slug = 'reclaimed--' || c.id::text || '-' || left(md5(gen_random_uuid()::text), 8)
    FROM unnest(%(ids)s::uuid[], %(slugs)s::text[]) AS d(id, slug)
    WHERE c.id = d.id AND c.slug = d.slug
      AND NOT EXISTS (SELECT 1 FROM syncd.rows r WHERE r.content_id = c.id)
    RETURNING c.id, d.slug AS old_slug, c.slug AS new_slug, c.project_id
)
INSERT INTO syncd.reclaimed_slugs (content_id, slug, new_slug, project_id, course, file_path)
SELECT t.id, t.old_slug, t.new_slug, t.project_id, %(course)s, d.path
FROM taken t JOIN unnest(%(ids)s::uuid[], %(paths)s::text[]) AS d(id, path) ON d.id = t.id;

-- name: insert_contents
-- every new row of the course in one statement (foreign keys are checked at its end, so
-- parents and children may come in any order)
INSERT INTO public.contents (id, project_id, content_type, parent_content_id, sequence_order,
                             slug, title, content, metadata, fidelity_score, status, file_path,
                             ai_generated)
SELECT d.id, %(project_id)s, d.content_type, d.parent_id, d.sequence_order, d.slug, d.title,
       d.content, d.metadata, d.fidelity_score, coalesce(d.status, 'draft'), d.file_path, true
FROM unnest(%(ids)s::uuid[], %(types)s::text[], %(parents)s::uuid[], %(orders)s::smallint[],
            %(slugs)s::text[], %(titles)s::text[], %(contents)s::text[], %(metadata)s::jsonb[],
            %(fidelity)s::numeric[], %(statuses)s::text[], %(paths)s::text[])
     AS d(id, content_type, parent_id, sequence_order, slug, title, content, metadata,
          fidelity_score, status, file_path);

-- name: update_content
UPDATE public.contents
SET project_id = %(project_id)s, content_type = %(content_type)s,
    parent_content_id = %(parent_id)s, sequence_order = %(sequence_order)s,
    title = %(title)s, content = %(content)s, metadata = %(metadata)s,
    fidelity_score = coalesce(%(fidelity_score)s, fidelity_score),
    status = coalesce(%(status)s, status), file_path = %(file_path)s,
    ai_generated = true, deleted_at = NULL
WHERE id = %(id)s;

-- name: soft_delete
WITH deleted AS (
    UPDATE public.contents SET deleted_at = now()
    WHERE id = ANY(%(ids)s::uuid[]) AND deleted_at IS NULL
    RETURNING id, xmin
)
UPDATE syncd.rows r SET written_xmin = deleted.xmin FROM deleted WHERE r.content_id = deleted.id;

-- name: insert_tags
INSERT INTO public.tags (name, tag_type) SELECT unnest(%(names)s::text[]), 'theme'
ON CONFLICT (name) DO NOTHING;

-- name: prune_content_tags
DELETE FROM public.content_tags t
WHERE t.content_id = ANY(%(ids)s::uuid[])
  AND NOT EXISTS (SELECT 1 FROM unnest(%(content_ids)s::uuid[], %(names)s::text[]) AS d(c, n)
                  JOIN public.tags g ON g.name = d.n
                  WHERE d.c = t.content_id AND g.id = t.tag_id);

-- name: insert_content_tags
INSERT INTO public.content_tags (content_id, tag_id)
SELECT d.c, g.id FROM unnest(%(content_ids)s::uuid[], %(names)s::text[]) AS d(c, n)
JOIN public.tags g ON g.name = d.n
ON CONFLICT DO NOTHING;

-- name: prune_content_minds
DELETE FROM public.content_minds m
WHERE m.content_id = ANY(%(ids)s::uuid[])
  AND NOT EXISTS (SELECT 1 FROM unnest(%(content_ids)s::uuid[], %(mind_ids)s::uuid[]) AS d(c, g)
                  WHERE d.c = m.content_id AND d.g = m.mind_id);

-- name: insert_content_minds
INSERT INTO public.content_minds AS m (content_id, mind_id, role)
SELECT * FROM unnest(%(content_ids)s::uuid[], %(mind_ids)s::uuid[], %(roles)s::text[])
ON CONFLICT (content_id, mind_id) DO UPDATE SET role = EXCLUDED.role
WHERE m.role IS DISTINCT FROM EXCLUDED.role;

-- name: release_row_keys
DELETE FROM syncd.rows
WHERE project_id = %(project_id)s AND row_key = ANY(%(keys)s::text[])
  AND NOT (content_id = ANY(%(ids)s::uuid[]));

-- name: upsert_rows
-- (after the rows' writes in the same transaction: their xmin is this transaction's)
INSERT INTO syncd.rows (content_id, project_id, row_key, row_hash, source_hash, fm_status,
                        written_xmin, synced_at)
SELECT d.id, %(project_id)s, d.k, d.h, d.sh, d.fm,
       (SELECT t.xmin FROM public.contents t WHERE t.id = d.id), now()
FROM unnest(%(ids)s::uuid[], %(keys)s::text[], %(hashes)s::bytea[], %(source_hashes)s::bytea[],
            %(fm_statuses)s::text[]) AS d(id, k, h, sh, fm)
ON CONFLICT (content_id) DO UPDATE
SET project_id = EXCLUDED.project_id, row_key = EXCLUDED.row_key, row_hash = EXCLUDED.row_hash,
    source_hash = EXCLUDED.source_hash, fm_status = EXCLUDED.fm_status,
    written_xmin = EXCLUDED.written_xmin, synced_at = EXCLUDED.synced_at;

-- name: upsert_course
-- a course without a source (synced before sources existed) is adopted by this one. Its
-- write marks, read after its writes in the same transaction: the project's and its
-- audience's xmin, and a hash of its rows' tag and mind links (the same formula as in
-- changed_courses; a link has no xmin of its own that syncd could keep)
INSERT INTO syncd.courses AS c (course, project_id, fingerprint, stat_fingerprint,
                                status_before_archive, synced_at, source, archived_at, row_count,
                                project_xmin, audience_xmin, links_mark)
SELECT %(course)s, %(project_id)s, %(fingerprint)s, %(stat_fingerprint)s, NULL, now(),
       %(source)s, NULL,
       (SELECT count(*) FROM syncd.rows r WHERE r.project_id = %(project_id)s),
       p.xmin, a.xmin,
       (SELECT coalesce(sum(l.h), 0) FROM syncd.rows r CROSS JOIN LATERAL (
            SELECT hashtextextended(t.content_id::text || ' ' || t.tag_id::text, 0)
            FROM public.content_tags t WHERE t.content_id = r.content_id
            UNION ALL
            SELECT hashtextextended(m.content_id::text || ' ' || m.mind_id::text || ' '
                                    || coalesce(m.role, ''), 1)
            FROM public.content_minds m WHERE m.content_id = r.content_id) AS l(h)
        WHERE r.project_id = %(project_id)s)
FROM public.content_projects p
LEFT JOIN public.audience_profiles a ON a.id = p.target_audience_id
WHERE p.id = %(project_id)s
ON CONFLICT (course) DO UPDATE
SET project_id = EXCLUDED.project_id, fingerprint = EXCLUDED.fingerprint,
    stat_fingerprint = EXCLUDED.stat_fingerprint, status_before_archive = NULL,
    synced_at = EXCLUDED.synced_at, source = coalesce(EXCLUDED.source, c.source),
    archived_at = NULL, row_count = EXCLUDED.row_count, project_xmin = EXCLUDED.project_xmin,
    audience_xmin = EXCLUDED.audience_xmin, links_mark = EXCLUDED.links_mark;

-- name: save_stat_fingerprints
-- files touched but unchanged: remember their new stat so the next rescan skips reading them
UPDATE syncd.courses c SET stat_fingerprint = d.stat
FROM unnest(%(courses)s::text[], %(fingerprints)s::bytea[], %(stats)s::bytea[]) AS d(course, fp, stat)
WHERE c.course = d.course AND c.fingerprint = d.fp;

-- name: archive_course
WITH course AS (
    SELECT c.course, c.project_id, p.status
    FROM syncd.courses c JOIN public.content_projects p ON p.id = c.project_id
    WHERE c.course = %(course)s AND p.status <> 'archived'
    FOR UPDATE OF c
), archived AS (
    UPDATE public.content_projects p SET status = 'archived'
    FROM course WHERE p.id = course.project_id
    RETURNING p.id
), remembered AS (
    UPDATE syncd.courses c
    SET status_before_archive = course.status, stat_fingerprint = NULL,
        archived_at = now(), synced_at = now()  -- the fingerprint stays: a rename is found by it
    FROM course WHERE c.course = course.course
    RETURNING c.course
), deleted AS (
    UPDATE public.contents t SET deleted_at = now()
    FROM course
    WHERE t.project_id = course.project_id AND t.deleted_at IS NULL
      AND EXISTS (SELECT 1 FROM syncd.rows r WHERE r.content_id = t.id)
    RETURNING t.id, t.xmin
), marked AS (
    UPDATE syncd.rows r SET written_xmin = deleted.xmin FROM deleted WHERE r.content_id = deleted.id
    RETURNING r.content_id
)
-- archived: the project archived (NULL: no live course of that name, e.g. renamed meanwhile)
SELECT (SELECT id FROM archived LIMIT 1) AS archived, (SELECT count(*) FROM marked)::int AS deleted;

-- name: file_paths
SELECT id, file_path FROM public.contents WHERE id = ANY(%(ids)s::uuid[]);

-- name: record_refusals
-- files whose row the database refused in this sync (the others of the project are cleared)
WITH cleared AS (
    DELETE FROM syncd.refused
    WHERE project_id = %(project_id)s AND NOT (file_path = ANY(%(paths)s::text[]))
)
INSERT INTO syncd.refused (file_path, project_id, sqlstate, reason, refused_at)
SELECT d.p, %(project_id)s, d.s, d.r, now()
FROM unnest(%(paths)s::text[], %(sqlstates)s::text[], %(reasons)s::text[]) AS d(p, s, r)
ON CONFLICT (file_path) DO UPDATE
SET project_id = EXCLUDED.project_id, sqlstate = EXCLUDED.sqlstate, reason = EXCLUDED.reason,
    refused_at = EXCLUDED.refused_at;

-- name: refused_files
SELECT file_path, reason, sqlstate FROM syncd.refused;

-- name: save_skipped_folders
-- the non-course folders a full reconcile saw, replacing the previous list
WITH gone AS (
    DELETE FROM syncd.skipped_folders WHERE NOT (folder = ANY(%(folders)s::text[]))
)
INSERT INTO syncd.skipped_folders (folder, files, seen_at)
SELECT d.f, d.n, now() FROM unnest(%(folders)s::text[], %(files)s::int[]) AS d(f, n)
ON CONFLICT (folder) DO UPDATE SET files = EXCLUDED.files, seen_at = EXCLUDED.seen_at;

-- name: adopt_courses
-- courses under this source's root that no live source owns (synced before sources, or by a
-- retired source) become this source's, even when nothing in them changed
UPDATE syncd.courses c SET source = %(source)s
WHERE c.course = ANY(%(courses)s::text[])
  AND (c.source IS NULL
       OR EXISTS (SELECT 1 FROM syncd.sources s WHERE s.name = c.source AND s.retired_at IS NOT NULL));

-- name: changed_courses
-- this source's live courses with a row someone else changed or deleted since syncd wrote
-- it: a contents row (its xmin, the course's row count), the project or its audience row
-- (their xmin), a tag or mind link (the hash of the links, as upsert_course computes it).
-- Unknown marks, from before they were kept, never count. Reads indexes and marks only.
WITH mine AS (
    SELECT c.course, c.project_id, c.row_count, c.project_xmin, c.audience_xmin, c.links_mark
    FROM syncd.courses c
    WHERE c.archived_at IS NULL AND (c.source IS NULL OR c.source = %(source)s)
), links AS (
    SELECT l.project_id, sum(l.h) AS mark FROM (
        SELECT r.project_id, hashtextextended(t.content_id::text || ' ' || t.tag_id::text, 0)
        FROM mine JOIN syncd.rows r ON r.project_id = mine.project_id
        JOIN public.content_tags t ON t.content_id = r.content_id
        UNION ALL
        SELECT r.project_id, hashtextextended(m.content_id::text || ' ' || m.mind_id::text || ' '
                                              || coalesce(m.role, ''), 1)
        FROM mine JOIN syncd.rows r ON r.project_id = mine.project_id
        JOIN public.content_minds m ON m.content_id = r.content_id
    ) AS l(project_id, h)
    GROUP BY l.project_id
)
SELECT c.course FROM mine c
LEFT JOIN public.content_projects p ON p.id = c.project_id
LEFT JOIN public.audience_profiles a ON a.id = p.target_audience_id
LEFT JOIN links ON links.project_id = c.project_id
WHERE EXISTS (SELECT 1 FROM syncd.rows r JOIN public.contents t ON t.id = r.content_id
              WHERE r.project_id = c.project_id AND r.written_xmin IS NOT NULL
                AND t.xmin::text <> r.written_xmin::text)
   OR c.row_count <> (SELECT count(*) FROM syncd.rows r WHERE r.project_id = c.project_id)
   OR p.xmin::text <> c.project_xmin::text
   OR (c.project_xmin IS NOT NULL
       AND coalesce(a.xmin::text, '') <> coalesce(c.audience_xmin::text, ''))
   OR c.links_mark <> coalesce(links.mark, 0);

-- name: rename_course
-- a course folder renamed: the project (its slug follows the new name), its rows' paths and
-- keys, and syncd's bookkeeping move with it; every id stays
WITH moved AS (
    -- the project's mark goes with the rename's own change of the project (its slug): the
    -- next sync writes a fresh one; a mark that had already moved (the app) stays to be seen
    UPDATE syncd.courses c SET course = %(new)s,
        project_xmin = CASE WHEN c.project_xmin::text = (
            SELECT p.xmin::text FROM public.content_projects p WHERE p.id = c.project_id
        ) THEN NULL ELSE c.project_xmin END
    WHERE c.course = %(old)s RETURNING c.project_id
), project AS (
    UPDATE public.content_projects p SET slug = %(slug)s FROM moved WHERE p.id = moved.project_id
    RETURNING p.id
), before AS (
    -- the rows as they were (every part of this statement sees the same snapshot)
    SELECT t.id, t.xmin::text AS xmin FROM public.contents t
    JOIN syncd.courses c ON c.project_id = t.project_id WHERE c.course = %(old)s
), paths AS (
    UPDATE public.contents t SET file_path = %(new)s || substr(t.file_path, length(%(old)s) + 1)
    FROM moved
    WHERE t.project_id = moved.project_id AND left(t.file_path, length(%(old)s) + 1) = %(old)s || '/'
    RETURNING t.id, t.xmin, t.file_path
), refusals AS (
    DELETE FROM syncd.refused f USING moved WHERE f.project_id = moved.project_id
)
-- a row's write mark moves with the rename's own change, unless someone else had changed the
-- row before it: that stays to be seen (and repaired) by the next sync
UPDATE syncd.rows r
SET written_xmin = CASE WHEN r.written_xmin IS NULL OR r.written_xmin::text = before.xmin
                        THEN paths.xmin ELSE r.written_xmin END,
    row_key = CASE WHEN r.row_key LIKE 'file:%%' THEN 'file:' || paths.file_path ELSE r.row_key END
FROM paths JOIN before ON before.id = paths.id WHERE r.content_id = paths.id
RETURNING r.content_id;

-- Content history (migration 20251201001500): a version per change of a row, written in the
-- course's own transaction after its rows (the planner names each row's kind of change).
-- 'updated' is kept only when the content or the title differs from the row's last version
-- (a write of metadata alone, or of identical text, adds nothing).

-- name: record_versions
-- 'app-edit' (the row as the app left it, before a repair or a rename writes over it; no
-- source: syncd did not write it) only when its content or title is not the last version's.
INSERT INTO public.content_versions (content_id, version, project_id, kind, title, content,
                                     content_hash, size, file_path, source, fields)
SELECT c.id, coalesce(l.version, 0) + 1, c.project_id, k.kind, c.title, c.content, h.hash,
       octet_length(coalesce(c.content, '')), c.file_path,
       CASE WHEN k.kind = 'app-edit' THEN NULL ELSE %(source)s::text END,
       nullif(string_to_array(k.fields, ','), '{}')
FROM unnest(%(ids)s::uuid[], %(kinds)s::text[], %(fields)s::text[]) AS k(id, kind, fields)
JOIN public.contents c ON c.id = k.id
CROSS JOIN LATERAL (SELECT sha256(convert_to(coalesce(c.content, ''), 'UTF8')) AS hash) h
LEFT JOIN LATERAL (
    SELECT v.version, v.content_hash, v.title FROM public.content_versions v
    WHERE v.content_id = c.id ORDER BY v.version DESC LIMIT 1
) l ON true
WHERE CASE k.kind
    WHEN 'updated' THEN l.version IS NULL OR l.content_hash <> h.hash
                        OR l.title IS DISTINCT FROM c.title
    WHEN 'app-edit' THEN l.version IS NOT NULL AND (l.content_hash <> h.hash
                                                    OR l.title IS DISTINCT FROM c.title)
    ELSE true
END;

-- name: course_rows_moving
-- A course folder about to be renamed: its live rows whose files move with it.
SELECT c.id FROM syncd.courses sc
JOIN public.contents c ON c.project_id = sc.project_id AND c.deleted_at IS NULL
WHERE sc.course = %(course)s AND left(c.file_path, length(%(course)s) + 1) = %(course)s || '/';

-- name: keep_last_versions
-- Retention by count (SYNCD_HISTORY_KEEP=N): of these rows, the N latest versions stay.
DELETE FROM public.content_versions v
USING (
    SELECT content_id, max(version) AS latest FROM public.content_versions
    WHERE content_id = ANY(%(ids)s::uuid[]) GROUP BY content_id
) m
WHERE v.content_id = m.content_id AND v.version <= m.latest - %(keep)s;

-- name: keep_recent_versions
-- Retention by age (SYNCD_HISTORY_KEEP=Nd): of these rows, versions recorded in the last N
-- days stay, and the latest always does.
DELETE FROM public.content_versions v
USING (
    SELECT content_id, max(version) AS latest FROM public.content_versions
    WHERE content_id = ANY(%(ids)s::uuid[]) GROUP BY content_id
) m
WHERE v.content_id = m.content_id AND v.version < m.latest
  AND v.recorded_at < now() - make_interval(days => %(days)s);
