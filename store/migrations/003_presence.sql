-- Participants connected to each instance, per session (store/follow.c).
-- While another instance shares the database, each instance writes its own
-- counts here once a second and sums the others' (those whose instances row
-- is fresh), so that `presence` counts every instance's participants.
CREATE TABLE presence (
    instance_id  text    NOT NULL REFERENCES instances ON DELETE CASCADE,
    session_id   bigint  NOT NULL,
    participants integer NOT NULL CHECK (participants >= 0),
    PRIMARY KEY (instance_id, session_id)
);
