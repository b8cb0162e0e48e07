-- Kill switches are final (SPEC §5): every app and installation has a token epoch, a counter that
-- only grows. A token records the epochs it was minted under (in its KV record) and is honoured
-- only while both are still current, so a bump ends every token minted before it, for good.
--   installations.token_epoch: bumped by a suspension, any change of permissions, revokeTokens.
--   apps.token_epoch: bumped by the deletion of any key of the app, and the app's revokeTokens.
-- Both are read in the batch every token use already makes (see STORAGE.md). Existing rows start at
-- 0, the epoch tokens minted before this migration read as, so no live token ends by deploying it.
ALTER TABLE apps ADD COLUMN token_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE installations ADD COLUMN token_epoch INTEGER NOT NULL DEFAULT 0;
