-- The overview's "recent errors": the last failed requests of an organization, newest first,
-- read through a partial index holding only failed requests, so the query never walks the
-- organization's successful ones. The predicate matches `UsageRecord::is_error` and the query's.
CREATE INDEX usage_records_errors ON usage_records (org_id, request_id)
    WHERE status < 200 OR status >= 300 OR error_code IS NOT NULL;
