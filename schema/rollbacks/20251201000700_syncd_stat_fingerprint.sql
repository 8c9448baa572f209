alter table syncd.courses drop column if exists stat_fingerprint;
