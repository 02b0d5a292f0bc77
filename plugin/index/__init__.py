"""`mmsearch index`: DBA tools over the width collections of a base (show, bench,
recommend, rebuild, rollback, funnel)."""
