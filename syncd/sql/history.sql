-- `syncd history` (syncd/cli/history.py): a file's versions, read as the caller (row-level
-- security applies: syncd_writer reads every row, a creator their own projects').

-- name: versions_of_path
-- The versions of the row a file feeds: the live row at that path, else the one that held it
-- last (a file deleted, or moved away).
WITH the_row AS (
    SELECT coalesce(
        (SELECT c.id FROM public.contents c WHERE c.file_path = %(path)s
         ORDER BY c.deleted_at IS NULL DESC, c.updated_at DESC LIMIT 1),
        (SELECT v.content_id FROM public.content_versions v WHERE v.file_path = %(path)s
         ORDER BY v.recorded_at DESC, v.version DESC LIMIT 1)
    ) AS id
)
SELECT v.content_id, v.version, v.recorded_at, v.source, v.kind, v.size, v.content_hash,
       v.title, v.file_path, v.fields,
       (SELECT c.file_path FROM public.contents c
        WHERE c.id = the_row.id AND c.deleted_at IS NULL) AS living_at
FROM public.content_versions v JOIN the_row ON v.content_id = the_row.id
ORDER BY v.version;

-- name: version_content
SELECT v.content FROM public.content_versions v
WHERE v.content_id = %(content_id)s AND v.version = %(version)s;
