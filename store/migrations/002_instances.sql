-- Instances sharing this database announce themselves here (store/follow.c):
-- each refreshes its row every second, and one that sees another row fresher
-- than a few seconds knows that votes of its sessions may be committed
-- elsewhere, so it reads their counts from the database.
CREATE TABLE instances (
    instance_id text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now()
);
