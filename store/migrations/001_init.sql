-- 001_init: sessions, participants, polls, votes and the shared event log.
-- Several tallyd instances may share this database; docs/schema.md explains
-- each constraint and how event_log.seq is assigned.

CREATE TABLE sessions (
    id                   bigserial PRIMARY KEY,
    code                 text NOT NULL UNIQUE,
    title                text NOT NULL,
    state                text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    presenter_token_hash text NOT NULL,
    seq                  bigint NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    closed_at            timestamptz
);

CREATE TABLE participants (
    id         bigserial PRIMARY KEY,
    session_id bigint NOT NULL REFERENCES sessions,
    name       text,
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX participants_session_id_idx ON participants (session_id);

CREATE TABLE polls (
    id          bigserial PRIMARY KEY,
    session_id  bigint NOT NULL REFERENCES sessions,
    question    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('single', 'multi', 'rating')),
    options     jsonb NOT NULL CHECK (jsonb_typeof(options) = 'array'),
    max_choices int NOT NULL CHECK (max_choices >= 1),
    state       text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'open', 'closed')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    opened_at   timestamptz,
    closed_at   timestamptz
);
CREATE INDEX polls_session_id_idx ON polls (session_id);

CREATE TABLE votes (
    id             bigserial PRIMARY KEY,
    session_id     bigint NOT NULL,
    poll_id        bigint NOT NULL REFERENCES polls,
    participant_id bigint NOT NULL REFERENCES participants,
    choices        smallint[] NOT NULL,
    idem_key       text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- One participant has at most one vote per poll.
    UNIQUE (poll_id, participant_id),
    -- A retried request (same idempotency key) finds the original vote.
    UNIQUE (participant_id, idem_key)
);

CREATE TABLE event_log (
    session_id  bigint NOT NULL REFERENCES sessions,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    instance_id text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX event_log_created_at_idx ON event_log (created_at);
