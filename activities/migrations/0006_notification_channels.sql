-- Notification channels (activities/channels/): each notification's delivery on each channel (email,
-- slack), one row per (notification, channel), so a retried activity sends only on the channels not
-- delivered yet and `hitl ops stuck` lists a channel that keeps failing. The outbox row stays the
-- record of the event itself (written once per notification_key); its payload now also holds the
-- links and who was reached or skipped, and `delivered_at` is set once every channel is done.

CREATE TABLE notification_deliveries (
    notification_id bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel ~ '^[a-z][a-z0-9_]*$'),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'skipped', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    sent_to         jsonb NOT NULL DEFAULT '[]',   -- addresses (email) or ["webhook"] (slack)
    refused         jsonb NOT NULL DEFAULT '{}',   -- address -> the server's reply, when some were refused
    last_error      text,
    first_failed_at timestamptz,
    last_failed_at  timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (notification_id, channel),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);

-- `hitl ops stuck`: the failures of each channel, newest first.
CREATE INDEX notification_deliveries_failing ON notification_deliveries (channel, last_failed_at)
    WHERE last_error IS NOT NULL AND status IN ('pending', 'failed');
CREATE INDEX notification_deliveries_delivered ON notification_deliveries (channel, delivered_at)
    WHERE status = 'delivered';
