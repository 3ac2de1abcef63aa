package video

import (
	"context"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/lockerhub/lockerhub/pg"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the package's schema (video_recordings).
func Migrations() pg.Migrations { return pg.Embedded("video", migrationsFS, "migrations") }

// RecordingsConfig tunes the clips; zero values take the defaults in brackets.
type RecordingsConfig struct {
	Dir       string        // where the WebM files go (app: <data dir>/recordings)
	Duration  time.Duration // clip length from the first keyframe [20s]
	MaxActive int           // recordings at once [4]
	MaxAge    time.Duration // retention by age [720h]
	MaxBytes  int64         // retention by total size [10 GiB]
	Queue     int           // RTP packets buffered per recorder; full: dropped, counted [2048]
	PruneEach time.Duration // retention runs this often [10m]
}

func (c *RecordingsConfig) defaults() {
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.MaxActive <= 0 {
		c.MaxActive = 4
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 30 * 24 * time.Hour
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 10 << 30
	}
	if c.Queue <= 0 {
		c.Queue = 2048
	}
	if c.PruneEach <= 0 {
		c.PruneEach = 10 * time.Minute
	}
}

// Recording states.
const (
	StateRecording   = "recording"
	StateDone        = "done"
	StateNoVideo     = "no_video"    // no keyframe arrived
	StateFailed      = "failed"      // the stream did not start, or writing failed
	StateUnsupported = "unsupported" // H.264: relayed, not recorded (docs/video.md)
)

// Recording is one clip.
type Recording struct {
	ID         int64      `json:"id"`
	LockerID   string     `json:"locker_id"`
	AlarmID    *int64     `json:"alarm_id,omitempty"`
	Reason     string     `json:"reason"`
	State      string     `json:"state"`
	Codec      string     `json:"codec,omitempty"`
	Bytes      int64      `json:"bytes"`
	Frames     int        `json:"frames"`
	DurationMS int64      `json:"duration_ms"`
	Error      string     `json:"error,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
	File       string     `json:"-"` // base name in the recordings directory
}

// Recordings keeps the clips: rows in video_recordings, files in Dir.
type Recordings struct {
	pool   *pgxpool.Pool
	cfg    RecordingsConfig
	log    *slog.Logger
	active atomic.Int32
	// deleted counts what retention deleted (the relay's metric; set by
	// Relay.SetRecordings before Run).
	deleted func(n int)
}

// NewRecordings makes the directory and returns the store.
func NewRecordings(pool *pgxpool.Pool, logger *slog.Logger, cfg RecordingsConfig) (*Recordings, error) {
	cfg.defaults()
	if cfg.Dir == "" {
		return nil, errors.New("video: recordings need a directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("video: recordings directory: %w", err)
	}
	return &Recordings{pool: pool, cfg: cfg, log: logger}, nil
}

// Active counts recordings in progress.
func (rs *Recordings) Active() int { return int(rs.active.Load()) }

const recCols = `id, locker_id, alarm_id, reason, state, codec, bytes, frames, duration_ms, error, started_at, ended_at, file`

func scanRecording(row pgx.Row) (Recording, error) {
	var r Recording
	err := row.Scan(&r.ID, &r.LockerID, &r.AlarmID, &r.Reason, &r.State, &r.Codec, &r.Bytes, &r.Frames, &r.DurationMS, &r.Error,
		&r.StartedAt, &r.EndedAt, &r.File)
	return r, err
}

// Get returns one recording.
func (rs *Recordings) Get(ctx context.Context, id int64) (Recording, error) {
	r, err := scanRecording(rs.pool.QueryRow(ctx, `SELECT `+recCols+` FROM video_recordings WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Recording{}, fmt.Errorf("%w: recording %d", ErrNotFound, id)
	}
	if err != nil {
		return Recording{}, fmt.Errorf("recording %d: %w", id, err)
	}
	return r, nil
}

// Filter selects recordings; empty fields match all.
type Filter struct {
	LockerID string
	AlarmID  int64
	Limit    int // [100]
}

// List returns recordings, newest first.
func (rs *Recordings) List(ctx context.Context, f Filter) ([]Recording, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	rows, err := rs.pool.Query(ctx, `SELECT `+recCols+` FROM video_recordings
		WHERE ($1 = '' OR locker_id = $1) AND ($2 = 0 OR alarm_id = $2) ORDER BY id DESC LIMIT $3`, f.LockerID, f.AlarmID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("recordings: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Recording, error) { return scanRecording(r) })
}

// Open opens a finished recording's file for reading. The name comes from
// the database, never from the request, and must be a plain file name.
func (rs *Recordings) Open(ctx context.Context, id int64) (*os.File, Recording, error) {
	rec, err := rs.Get(ctx, id)
	if err != nil {
		return nil, Recording{}, err
	}
	if rec.State != StateDone || rec.File == "" || filepath.Base(rec.File) != rec.File || strings.HasPrefix(rec.File, ".") {
		return nil, Recording{}, fmt.Errorf("%w: recording %d has no playable file (state %s)", ErrNotFound, id, rec.State)
	}
	f, err := os.Open(filepath.Join(rs.cfg.Dir, rec.File))
	if errors.Is(err, os.ErrNotExist) {
		return nil, Recording{}, fmt.Errorf("%w: recording %d: its file is gone", ErrNotFound, id)
	}
	return f, rec, err
}

// Path is the file of a recording (tests).
func (rs *Recordings) Path(rec Recording) string { return filepath.Join(rs.cfg.Dir, rec.File) }

// Run marks the clips a previous run left unfinished as failed, then applies
// retention now and every PruneEach until ctx ends.
func (rs *Recordings) Run(ctx context.Context) {
	if _, err := rs.pool.Exec(ctx, `UPDATE video_recordings SET state = 'failed', error = 'the hub stopped while recording', ended_at = now()
		WHERE state = 'recording'`); err != nil && ctx.Err() == nil {
		rs.log.Warn("video: unfinished recordings", "error", err)
	}
	t := time.NewTicker(rs.cfg.PruneEach)
	defer t.Stop()
	for {
		if n, err := rs.Prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
			rs.log.Warn("video: recordings retention", "error", err)
		} else if n > 0 {
			rs.log.Info("video: recordings deleted by retention", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Prune deletes the finished recordings older than MaxAge, then the oldest
// ones beyond MaxBytes in total (files first, then rows). Recordings in
// progress are kept.
func (rs *Recordings) Prune(ctx context.Context, now time.Time) (int, error) {
	rows, err := rs.pool.Query(ctx, `SELECT id, file, started_at < $1 AS old,
			sum(bytes) OVER (ORDER BY id DESC) > $2 AS over
		FROM video_recordings WHERE state <> 'recording'`, now.Add(-rs.cfg.MaxAge), rs.cfg.MaxBytes)
	if err != nil {
		return 0, err
	}
	type victim struct {
		id   int64
		file string
	}
	var vs []victim
	for rows.Next() {
		var v victim
		var old, over bool
		if err := rows.Scan(&v.id, &v.file, &old, &over); err != nil {
			rows.Close()
			return 0, err
		}
		if old || over {
			vs = append(vs, v)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, v := range vs {
		if v.file != "" && filepath.Base(v.file) == v.file {
			if err := os.Remove(filepath.Join(rs.cfg.Dir, v.file)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return n, err
			}
		}
		if _, err := rs.pool.Exec(ctx, `DELETE FROM video_recordings WHERE id = $1`, v.id); err != nil {
			return n, err
		}
		n++
	}
	if rs.deleted != nil && n > 0 {
		rs.deleted(n)
	}
	return n, nil
}

// Record starts a clip of a locker's camera: the stream is started when it
// does not run, a keyframe is asked for at once and the clip runs from the
// first keyframe for Duration (decision 21). It returns the recording's row
// at once; the clip is written in the background.
func (r *Relay) Record(ctx context.Context, lockerID string, alarmID *int64, reason string) (Recording, error) {
	rs := r.rec
	if rs == nil {
		return Recording{}, errors.New("video: recordings are not configured")
	}
	if int(rs.active.Add(1)) > rs.cfg.MaxActive {
		rs.active.Add(-1)
		r.m.recordingsRefused.Inc()
		r.m.recordings.WithLabelValues("refused").Inc()
		return Recording{}, fmt.Errorf("%w: %d run (the limit)", ErrTooManyRecording, rs.cfg.MaxActive)
	}
	rec, err := scanRecording(rs.pool.QueryRow(ctx, `INSERT INTO video_recordings (locker_id, alarm_id, reason, state)
		VALUES ($1, $2, $3, 'recording') RETURNING `+recCols, lockerID, alarmID, reason))
	if err != nil {
		rs.active.Add(-1)
		return Recording{}, fmt.Errorf("recording: %w", err)
	}
	s, err := r.acquire(lockerID, "recorder")
	if err != nil {
		rs.active.Add(-1)
		rs.finish(context.Background(), &rec, StateFailed, err)
		r.m.recordings.WithLabelValues("error").Inc()
		return rec, err
	}
	bg := rec // the goroutine's own copy; rec is returned as it is now
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer rs.active.Add(-1)
		defer r.release(s, "recorder")
		state, err := r.record(s, &bg)
		rs.finish(context.Background(), &bg, state, err)
		switch state {
		case StateDone:
			r.m.recordings.WithLabelValues("ok").Inc()
		case StateNoVideo:
			r.m.recordings.WithLabelValues("no_video").Inc()
		default:
			r.m.recordings.WithLabelValues("error").Inc()
		}
		r.m.recordingBytes.Add(float64(bg.Bytes))
		r.log.Info("video recording finished", "locker", lockerID, "recording", bg.ID, "state", state, "bytes", bg.Bytes, "frames", bg.Frames, "error", err)
	}()
	return rec, nil
}

func (rs *Recordings) finish(ctx context.Context, rec *Recording, state string, cause error) {
	rec.State = state
	if cause != nil {
		rec.Error = cause.Error()
	}
	now := time.Now()
	rec.EndedAt = &now
	if _, err := rs.pool.Exec(ctx, `UPDATE video_recordings SET state = $2, codec = $3, bytes = $4, frames = $5, duration_ms = $6,
		error = $7, ended_at = $8, file = $9 WHERE id = $1`,
		rec.ID, rec.State, rec.Codec, rec.Bytes, rec.Frames, rec.DurationMS, rec.Error, now, rec.File); err != nil {
		rs.log.Error("video: recording row", "recording", rec.ID, "error", err)
	}
}

// recorder takes RTP packets from a stream's forward loop.
type recorder struct {
	ch    chan *rtp.Packet
	ended chan struct{}
	lost  func()
	done  atomic.Bool
}

// push never blocks the forward loop: a full queue drops the packet.
func (c *recorder) push(p *rtp.Packet) {
	select {
	case c.ch <- p:
	default:
		c.lost()
	}
}

func (c *recorder) upstreamEnded() {
	if c.done.CompareAndSwap(false, true) {
		close(c.ended)
	}
}

// record writes one clip; it returns the final state.
func (r *Relay) record(s *stream, rec *Recording) (string, error) {
	rs := r.rec
	wctx, cancel := context.WithTimeout(r.ctx, r.cfg.StartTimeout)
	err := s.wait(wctx)
	cancel()
	if err != nil {
		return StateFailed, err
	}
	codec := s.track.Codec().MimeType
	rec.Codec = codec
	if !strings.EqualFold(codec, webrtc.MimeTypeVP8) {
		return StateUnsupported, fmt.Errorf("%s is relayed but not recorded", codec)
	}
	c := &recorder{ch: make(chan *rtp.Packet, rs.cfg.Queue), ended: make(chan struct{}), lost: r.m.recordingPacketsLost.Inc}
	s.tapMu.Lock()
	s.taps[c] = struct{}{}
	s.tapMu.Unlock()
	defer func() {
		s.tapMu.Lock()
		delete(s.taps, c)
		s.tapMu.Unlock()
	}()
	r.mu.Lock()
	ended := s.ended
	r.mu.Unlock()
	if ended {
		return StateFailed, ErrStreamEnded
	}
	s.lastPLI.Store(0) // a recording asks at once, whatever the rate limit says
	r.keyframe(s)

	w := &webmClip{dir: rs.cfg.Dir, id: rec.ID}
	defer w.abort()
	sb := samplebuilder.New(128, &codecs.VP8Packet{}, 90000)
	// No keyframe within StartTimeout + Duration: no video.
	noVideo := time.NewTimer(r.cfg.StartTimeout + rs.cfg.Duration)
	defer noVideo.Stop()
	var stop <-chan time.Time
	pli := time.NewTicker(time.Second)
	defer pli.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return w.close(rec, "shutdown")
		case <-c.ended:
			return w.close(rec, "the stream ended")
		case <-noVideo.C:
			if !w.started() {
				return StateNoVideo, errors.New("no keyframe arrived")
			}
		case <-stop:
			return w.close(rec, "")
		case <-pli.C:
			if !w.started() {
				r.keyframe(s)
			}
		case p := <-c.ch:
			sb.Push(p)
			for smp := sb.Pop(); smp != nil; smp = sb.Pop() {
				first := !w.started()
				if err := w.write(smp.Data, smp.PacketTimestamp); err != nil {
					rec.File = "" // abort removes what was written: no half clip to download
					return StateFailed, err
				}
				if first && w.started() {
					stop = time.After(rs.cfg.Duration)
					rec.File = w.name()
				}
			}
		}
	}
}

// webmClip writes VP8 frames to a WebM file with a seek head and cues,
// starting at the first keyframe.
type webmClip struct {
	dir     string
	id      int64
	file    *clipFile
	bw      webm.BlockWriteCloser
	ts0     uint32
	lastMS  int64
	frames  int
	written bool // closed properly
}

func (w *webmClip) name() string  { return strconv.FormatInt(w.id, 10) + ".webm" }
func (w *webmClip) started() bool { return w.bw != nil }
func (w *webmClip) path() string  { return filepath.Join(w.dir, w.name()) }
func keyframeVP8(d []byte) bool {
	return len(d) >= 10 && d[0]&0x01 == 0 && d[3] == 0x9d && d[4] == 0x01 && d[5] == 0x2a
}
func vp8Size(d []byte) (w, h uint64) {
	return uint64(binary.LittleEndian.Uint16(d[6:8]) & 0x3fff), uint64(binary.LittleEndian.Uint16(d[8:10]) & 0x3fff)
}

func (w *webmClip) write(frame []byte, ts uint32) error {
	key := keyframeVP8(frame)
	if w.bw == nil {
		if !key {
			return nil // drop until the first keyframe
		}
		width, height := vp8Size(frame)
		f, err := os.OpenFile(w.path(), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("recording file: %w", err)
		}
		// ebml-go writes in a goroutine of its own and panics on a write error
		// (a full disk would take the hub down): it gets a file that never
		// fails, and the clip checks the first error itself.
		w.file = &clipFile{f: f}
		ws, err := webm.NewSimpleBlockWriter(w.file, []webm.TrackEntry{{
			Name: "Video", TrackNumber: 1, TrackUID: 1, CodecID: "V_VP8", TrackType: 1,
			Video: &webm.Video{PixelWidth: width, PixelHeight: height},
		}},
			mkvcore.WithSegmentInfo(&webm.Info{TimecodeScale: 1000000, MuxingApp: "lockerhub", WritingApp: "lockerhub"}),
			mkvcore.WithSeekHead(true), mkvcore.WithCues(16<<10))
		if err != nil {
			_ = f.Close()
			_ = os.Remove(w.path())
			return fmt.Errorf("recording file: %w", err)
		}
		w.bw, w.ts0 = ws[0], ts
	}
	ms := int64(ts-w.ts0) / 90 // RTP clock 90 kHz; wraps as uint32
	if ms < w.lastMS {
		ms = w.lastMS
	}
	w.lastMS = ms
	if _, err := w.bw.Write(key, ms, frame); err != nil {
		return fmt.Errorf("recording: write: %w", err)
	}
	if err := w.file.failed(); err != nil {
		return fmt.Errorf("recording: write: %w", err)
	}
	w.frames++
	return nil
}

// clipFile is the recording's file as ebml-go sees it: after the first
// failed write it drops everything and reports success, remembering the
// error for the clip (failed) to act on.
type clipFile struct {
	f   *os.File
	mu  sync.Mutex
	err error
}

func (c *clipFile) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *clipFile) note(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *clipFile) Write(p []byte) (int, error) {
	if c.failed() == nil {
		if _, err := c.f.Write(p); err != nil {
			c.note(err)
		}
	}
	return len(p), nil
}

func (c *clipFile) WriteAt(p []byte, off int64) (int, error) {
	if c.failed() == nil {
		if _, err := c.f.WriteAt(p, off); err != nil {
			c.note(err)
		}
	}
	return len(p), nil
}

func (c *clipFile) Close() error {
	err := c.f.Close()
	if ferr := c.failed(); ferr != nil {
		return ferr
	}
	return err
}

// close finishes the file; a clip cut short (why != "") is still kept.
func (w *webmClip) close(rec *Recording, why string) (string, error) {
	if w.bw == nil {
		return StateNoVideo, fmt.Errorf("no keyframe arrived before %s", orText(why, "the end"))
	}
	err := w.bw.Close() // closes the file too
	if ferr := w.file.failed(); err == nil {
		err = ferr
	}
	w.written = true
	w.bw = nil
	if err != nil {
		// Its cues and sizes were not written (a full disk): not a clip.
		_ = os.Remove(w.path())
		rec.File = ""
		return StateFailed, fmt.Errorf("recording: close: %w", err)
	}
	st, err := os.Stat(w.path())
	if err != nil {
		return StateFailed, err
	}
	rec.File, rec.Bytes, rec.Frames, rec.DurationMS = w.name(), st.Size(), w.frames, w.lastMS
	if why != "" {
		return StateDone, fmt.Errorf("cut short: %s", why)
	}
	return StateDone, nil
}

// abort removes a file that was not finished.
func (w *webmClip) abort() {
	if w.bw != nil && !w.written {
		_ = w.bw.Close()
		_ = os.Remove(w.path())
		w.bw = nil
	}
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
