-- provides: syncd.sources.settings
-- The settings that shape a source's rows, recorded with the source by its writer (every
-- `syncd --rescan` and the daemon, at each full reconcile): the default creator mind
-- (SYNCD_CREATOR_MIND), the file size limit (SYNCD_MAX_FILE_BYTES) and whether links are
-- followed (SYNCD_FOLLOW_SYMLINKS), as a JSON object keyed by setting name. `verify`,
-- `report` and `--rescan` of that source run without one of them use the recorded value, so
-- that a shell that lacks the writer's environment reads the tree as the writer does; given
-- another value they say so, naming the setting. NULL: recorded by no writer yet (a source
-- registered before this migration, until its next rescan or full reconcile).
-- syncd_writer already holds SELECT, INSERT and UPDATE on syncd.sources.

alter table syncd.sources add column if not exists settings jsonb;
