-- Clips of lockers' cameras (video/recorder.go). alarm_id names the alarm
-- that asked for the clip (alarms_alarms.id); no foreign key: alarms and
-- video are separate packages and an alarm is never deleted.
CREATE TABLE video_recordings (
    id          bigserial PRIMARY KEY,
    locker_id   text NOT NULL,
    alarm_id    bigint,
    reason      text NOT NULL DEFAULT '',
    state       text NOT NULL CHECK (state IN ('recording', 'done', 'no_video', 'failed', 'unsupported')),
    codec       text NOT NULL DEFAULT '',
    bytes       bigint NOT NULL DEFAULT 0,
    frames      integer NOT NULL DEFAULT 0,
    duration_ms bigint NOT NULL DEFAULT 0,
    error       text NOT NULL DEFAULT '',
    file        text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz
);
CREATE INDEX video_recordings_locker ON video_recordings (locker_id, id DESC);
CREATE INDEX video_recordings_alarm ON video_recordings (alarm_id) WHERE alarm_id IS NOT NULL;
