-- Stored events per kind.
SELECT kind, count() AS events FROM events FINAL GROUP BY kind ORDER BY kind
