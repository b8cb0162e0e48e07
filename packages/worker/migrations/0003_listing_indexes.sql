-- Indexes for the listings: keyset (cursor) and offset pages of installations, and the operator's
-- listings of apps and installations. Each walks its index in (created_at, id) order, so no listing
-- sorts or scans the table. See STORAGE.md.

-- GET /admin/installations?appId=: one app's installations, suspended ones too (and their count).
-- (GET /app/installations, active only, keeps installations_active_by_app: app_id, suspended_at IS NULL,
-- then (created_at, id) > (?, ?) for a cursor.)
CREATE INDEX installations_by_app ON installations (app_id, created_at, id);
-- GET /admin/installations: every app's installations.
CREATE INDEX installations_by_creation ON installations (created_at, id);
-- GET /admin/apps.
CREATE INDEX apps_by_creation ON apps (created_at, id);
