package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/lockerhub/lockerhub/alarms"
	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/video"
)

// startVideo binds the ICE UDP port and runs the camera relay, the clip
// retention and the recordings that door-forced and tamper alarms ask for.
// Call it after startAlarms and before the broker starts.
func (a *App) startVideo(runCtx context.Context) error {
	cfg := a.cfg.Video
	if cfg.Recordings.Dir == "" {
		cfg.Recordings.Dir = filepath.Join(a.cfg.DataDir, "recordings")
	}
	relay, err := video.New(videoDevices{a.Broker}, a.log.With("component", "video"), a.Metrics, cfg)
	if err != nil {
		return err
	}
	rec, err := video.NewRecordings(a.Pool, a.log.With("component", "recordings"), cfg.Recordings)
	if err != nil {
		relay.Close()
		return err
	}
	relay.SetRecordings(rec)
	a.Video, a.Recordings = relay, rec

	// New alarms of these kinds record a clip. The alarms' consumer must not
	// block: requests wait in a bounded queue (full: dropped and logged).
	queue := make(chan alarms.Alarm, 64)
	a.Alarms.OnFired(func(al alarms.Alarm) {
		if al.Kind != alarms.KindDoorForced && al.Kind != alarms.KindTamper {
			return
		}
		select {
		case queue <- al:
		default:
			a.log.Warn("video: recording queue full; no clip for this alarm", "alarm", al.ID, "locker", al.LockerID)
		}
	})
	a.wg.Add(3)
	go func() { defer a.wg.Done(); relay.Run(runCtx) }()
	go func() { defer a.wg.Done(); rec.Run(runCtx) }()
	go func() {
		defer a.wg.Done()
		for {
			select {
			case <-runCtx.Done():
				return
			case al := <-queue:
				ctx, cancel := context.WithTimeout(runCtx, 5*time.Second)
				id := al.ID
				if _, err := relay.Record(ctx, al.LockerID, &id, "alarm:"+al.Kind); err != nil {
					a.log.Warn("video: no clip for the alarm", "alarm", al.ID, "locker", al.LockerID, "error", err)
				}
				cancel()
			}
		}
	}()
	return nil
}

// videoDevices adapts the broker's RPC to video.Devices.
type videoDevices struct{ b *broker.Broker }

func (d videoDevices) Online(id string) bool { return d.b.Online(id) }

func (d videoDevices) Call(ctx context.Context, id, method string, params, result any) error {
	err := d.b.Call(ctx, id, method, params, result)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, broker.ErrOffline):
		return fmt.Errorf("%w: %v", video.ErrOffline, err)
	case errors.Is(err, broker.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %v", video.ErrNoAnswer, err)
	default:
		return err
	}
}
