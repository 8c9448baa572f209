-- provides: syncd.courses.project_xmin, syncd.courses.audience_xmin, syncd.courses.links_mark
-- syncd write marks beyond contents rows, so that the project, its audience and the tag and
-- mind links of a course, when edited elsewhere, are found and repaired like contents rows
-- (an index and mark comparison at every full reconcile, no content read).
--
-- syncd.courses.project_xmin / audience_xmin: the xmin of the project row and of its audience
-- row right after syncd's last write of the course. Another xmin: someone else wrote them.
-- syncd.courses.links_mark: a hash (a sum of hashtextextended) of the course rows' tag links
-- (content_tags) and mind links (content_minds) after that write: link rows have no write
-- mark of their own syncd could keep, and a deleted row leaves no xmin behind.
-- All NULL for what was written before this migration: unknown, never "changed".

alter table syncd.courses add column if not exists project_xmin xid;
alter table syncd.courses add column if not exists audience_xmin xid;
alter table syncd.courses add column if not exists links_mark numeric;
