package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/alarms"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/video"
)

// webmFile is a WebM file as a player reads it.
type webmFile struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment webm.Segment    `ebml:"Segment"`
}

// TestTamperAlarmRecordsAClip: a simulated locker reports tampering; the
// hub raises the alarm, starts the locker's camera (nobody watches it),
// records a clip from the first keyframe and links it to the alarm. The
// file is a WebM a browser plays: VP8, 320×240, starting with a keyframe,
// frames over about the clip's length, a seek index (cues) and a duration.
// It is served with range requests; retention deletes it.
func TestTamperAlarmRecordsAClip(t *testing.T) {
	h := alarmHub(t, nil, func(c *app.Config) {
		c.Video.IdleTimeout = 500 * time.Millisecond
		c.Video.Recordings.Duration = 2 * time.Second
	})
	sim := startLockers(t, h, "REC-", 1)
	locker := "REC-00001"
	sim.Lockers()[0].Tamper()

	ctx := context.Background()
	var al alarms.Alarm
	hubtest.Eventually(t, 10*time.Second, "the tamper alarm fires", func() bool {
		list, err := h.App.Alarms.List(ctx, alarms.Filter{LockerID: locker, Kind: alarms.KindTamper})
		require.NoError(t, err)
		if len(list) == 1 {
			al = list[0]
		}
		return len(list) == 1
	})
	var rec video.Recording
	hubtest.Eventually(t, 20*time.Second, "a finished recording linked to the alarm", func() bool {
		list, err := h.App.Recordings.List(ctx, video.Filter{AlarmID: al.ID})
		require.NoError(t, err)
		if len(list) == 1 && list[0].State != video.StateRecording {
			rec = list[0]
			return true
		}
		return false
	})
	require.Equal(t, video.StateDone, rec.State, rec.Error)
	require.Equal(t, locker, rec.LockerID)
	require.Equal(t, "video/VP8", rec.Codec)
	require.Greater(t, rec.Frames, 20, "2 s at 15 fps")
	require.InDelta(t, 2000, rec.DurationMS, 600)

	data, err := os.ReadFile(h.App.Recordings.Path(rec))
	require.NoError(t, err)
	require.EqualValues(t, len(data), rec.Bytes)
	var f webmFile
	require.NoError(t, ebml.Unmarshal(bytes.NewReader(data), &f))
	require.Equal(t, "webm", f.Header.DocType)
	require.Len(t, f.Segment.Tracks.TrackEntry, 1)
	tr := f.Segment.Tracks.TrackEntry[0]
	require.Equal(t, "V_VP8", tr.CodecID)
	require.EqualValues(t, 320, tr.Video.PixelWidth)
	require.EqualValues(t, 240, tr.Video.PixelHeight)
	var blocks, keys int
	for i, c := range f.Segment.Cluster {
		for j, b := range c.SimpleBlock {
			if i == 0 && j == 0 {
				require.True(t, b.Keyframe, "a clip starts with a keyframe")
			}
			blocks++
			if b.Keyframe {
				keys++
			}
			require.NotEmpty(t, b.Data)
		}
	}
	require.Equal(t, rec.Frames, blocks)
	require.GreaterOrEqual(t, keys, 2, "a keyframe every second")
	require.NotNil(t, f.Segment.Cues, "seekable: cues")
	require.NotEmpty(t, f.Segment.Cues.CuePoint)
	require.Greater(t, f.Segment.Info.Duration, 1000.0, "a duration in ms")

	// The API lists it under the alarm and serves it, also in ranges.
	st, out := call(t, "GET", h.HTTPURL+"/api/v1/recordings?alarm="+itoa(al.ID), h.AdminToken)
	require.Equal(t, 200, st)
	require.Len(t, out["recordings"], 1)
	req, _ := http.NewRequest("GET", h.HTTPURL+"/api/v1/recordings/"+itoa(rec.ID)+"/file", nil)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	req.Header.Set("Range", "bytes=0-99")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, "video/webm", resp.Header.Get("Content-Type"))
	require.Equal(t, data[:100], part)
	for _, bad := range []string{"../../etc/passwd", "..%2f..%2fetc%2fpasswd", "0", "999999"} {
		st, _ := call(t, "GET", h.HTTPURL+"/api/v1/recordings/"+bad+"/file", h.AdminToken)
		require.Contains(t, []int{400, 404}, st, bad)
	}

	// The stream nobody watched stops after the clip and the idle timeout.
	hubtest.Eventually(t, 5*time.Second, "the camera stops", func() bool { return !h.App.Video.Status(locker).Streaming })

	// Retention: by size, then by age; the file goes with the row.
	n, err := h.App.Recordings.Prune(ctx, time.Now().Add(31*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1.0, h.Metric("lockerhub_video_recordings_deleted_total"))
	_, err = os.Stat(h.App.Recordings.Path(rec))
	require.ErrorIs(t, err, os.ErrNotExist)
	st, _ = call(t, "GET", h.HTTPURL+"/api/v1/recordings/"+itoa(rec.ID)+"/file", h.AdminToken)
	require.Equal(t, 404, st)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// call makes an API request with a bearer token and decodes a JSON answer.
func call(t *testing.T, method, url, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}
