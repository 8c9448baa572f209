-- `syncd minds`: who owns what. A course belongs to its creator mind
-- (content_projects.creator_mind_id); a signed-in user reads the courses of the mind their
-- user_profiles row names (public.current_mind_id()). Run as the schema owner (postgres on
-- Supabase): syncd_writer reads neither auth.users nor user_profiles.

-- name: find_user
-- a user by id, or by e-mail in any case (at most two, to tell an ambiguous e-mail)
SELECT u.id, u.email FROM auth.users u
WHERE u.id = %(id)s::uuid OR lower(u.email) = lower(%(email)s)
ORDER BY u.id LIMIT 2;

-- name: mind_holder
-- the user a mind is linked to (user_profiles.mind_id is unique: at most one)
SELECT p.id, u.email FROM public.user_profiles p
JOIN public.minds m ON m.id = p.mind_id
LEFT JOIN auth.users u ON u.id = p.id
WHERE m.slug = %(slug)s;

-- name: user_mind
SELECT m.slug FROM public.user_profiles p JOIN public.minds m ON m.id = p.mind_id
WHERE p.id = %(user)s;

-- name: ensure_mind
-- the mind of this slug, made when missing (as syncd makes the minds a brief names)
WITH made AS (
    INSERT INTO public.minds (slug, display_name) VALUES (%(slug)s, %(name)s)
    ON CONFLICT (slug) DO NOTHING
    RETURNING id
)
SELECT id, true AS created FROM made
UNION ALL
SELECT id, false FROM public.minds WHERE slug = %(slug)s AND NOT EXISTS (SELECT 1 FROM made);

-- name: link_user
INSERT INTO public.user_profiles (id, mind_id) VALUES (%(user)s, %(mind)s)
ON CONFLICT (id) DO UPDATE SET mind_id = EXCLUDED.mind_id;

-- name: list_minds
-- every mind a user is linked to or a live course names: its users, the live courses it
-- creates, the live courses it is the persona of
SELECT m.slug AS mind,
       coalesce((SELECT array_agg(coalesce(u.email, p.id::text) ORDER BY u.email, p.id)
                 FROM public.user_profiles p LEFT JOIN auth.users u ON u.id = p.id
                 WHERE p.mind_id = m.id), '{}') AS users,
       coalesce((SELECT array_agg(c.slug ORDER BY c.slug) FROM public.content_projects c
                 WHERE c.creator_mind_id = m.id
                   AND c.status IS DISTINCT FROM 'archived'), '{}') AS courses,
       coalesce((SELECT array_agg(c.slug ORDER BY c.slug) FROM public.content_projects c
                 WHERE c.persona_mind_id = m.id
                   AND c.status IS DISTINCT FROM 'archived'), '{}') AS persona_of
FROM public.minds m
WHERE EXISTS (SELECT 1 FROM public.user_profiles p WHERE p.mind_id = m.id)
   OR EXISTS (SELECT 1 FROM public.content_projects c
              WHERE (c.creator_mind_id = m.id OR c.persona_mind_id = m.id)
                AND c.status IS DISTINCT FROM 'archived')
ORDER BY m.slug;

-- name: unread_courses
-- live courses no signed-in user reads as their creator: no creator mind, or a creator mind
-- no user is linked to
SELECT c.slug, m.slug AS mind FROM public.content_projects c
LEFT JOIN public.minds m ON m.id = c.creator_mind_id
WHERE c.status IS DISTINCT FROM 'archived'
  AND NOT EXISTS (SELECT 1 FROM public.user_profiles p
                  WHERE p.mind_id = c.creator_mind_id)
ORDER BY c.slug;
