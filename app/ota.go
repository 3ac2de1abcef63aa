package app

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/ota"
	"github.com/lockerhub/lockerhub/protocol"
)

// startOTA builds the updater and wires the lockers' ota/status reports and
// the answers to ota.install to it. Call it before the broker starts; the
// engine is started by runOTA once the device listener's address is known.
func (a *App) startOTA() error {
	cfg := a.cfg.OTA
	cfg.DataDir = a.cfg.DataDir
	var err error
	a.OTA, err = ota.New(a.Pool, a.Broker, &otaFleet{reg: a.Registry, twins: a.Twins, ov: a.Overview, cmds: a.Commands},
		cfg, a.log.With("component", "ota"), a.Metrics)
	if err != nil {
		return err
	}
	a.Broker.Handle(protocol.KindOTAStatus, func(m broker.Message) {
		// Acknowledged once the engine has taken it: a locker's steps are
		// never lost between its report and the engine, so a report of the
		// new firmware always finds the steps before it (ota/engine.go).
		done := func(err error) { m.Done(deviceError(err)) }
		if err := a.OTA.Report(m.LockerID, m.Payload, done); err != nil {
			done(err)
		}
	})
	a.Broker.OnResponse(a.OTA.Response)
	return nil
}

// runOTA sets the download URL base and starts the rollout engine.
func (a *App) runOTA(runCtx context.Context) {
	url := a.cfg.OTA.DeviceURL
	if url == "" {
		url = defaultOTAURL(a.cfg.Hostnames, a.DeviceAddr())
	}
	a.log.Info("firmware downloads", "url", url)
	a.OTA.SetDeviceURL(url)
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.OTA.Run(runCtx) }()
}

// defaultOTAURL is where lockers download from when --ota-url is not set:
// the first name of the server certificate that is not a loopback one, with
// the device listener's port; else the bound address as a local client dials it.
func defaultOTAURL(hostnames []string, bound string) string {
	_, port, err := net.SplitHostPort(bound)
	if err == nil {
		for _, h := range hostnames {
			if ip := net.ParseIP(h); h == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified())) {
				continue
			}
			return "https://" + net.JoinHostPort(h, port)
		}
	}
	return "https://" + localAddr(bound)
}

// otaFleet answers the updater's questions from the registry, the twins, the
// overview (doors, battery) and the open commands.
type otaFleet struct {
	reg   *fleet.Registry
	twins *fleet.Twins
	ov    *fleet.Overview
	cmds  *fleet.Commands

	mu      sync.Mutex
	zones   map[string]string
	zonesAt time.Time
}

func (f *otaFleet) Lockers(ctx context.Context) ([]ota.Locker, error) {
	ls, _, err := f.reg.List(ctx, fleet.LockerFilter{})
	if err != nil {
		return nil, err
	}
	out := make([]ota.Locker, 0, len(ls))
	zones := make(map[string]string, len(ls))
	for _, l := range ls {
		zones[l.ID] = l.TimeZone
		if !l.Enabled {
			continue
		}
		out = append(out, ota.Locker{ID: l.ID, Model: l.Model, Segments: l.Segments, TimeZone: l.TimeZone, Firmware: f.Firmware(l.ID)})
	}
	f.mu.Lock()
	f.zones, f.zonesAt = zones, time.Now()
	f.mu.Unlock()
	return out, nil
}

func (f *otaFleet) Firmware(id string) string {
	if t := f.twins.Get(id); t != nil {
		return t.Reported.Firmware
	}
	return ""
}

// zoneRefresh is how old the cached time zones may get.
const zoneRefresh = 30 * time.Second

func (f *otaFleet) TimeZone(id string) string {
	f.mu.Lock()
	stale := f.zones == nil || time.Since(f.zonesAt) > zoneRefresh
	f.mu.Unlock()
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = f.Lockers(ctx) // on error the old zones stay
		cancel()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.zones[id]
}

func (f *otaFleet) Busy(id string) string {
	if r, ok := f.ov.Row(id); ok {
		if r.OpenDoors > 0 {
			return "a door is open"
		}
		if r.OnBattery {
			return "on battery power"
		}
	}
	if f.cmds != nil && f.cmds.Open(id) > 0 {
		return "a command is in progress"
	}
	return ""
}

func (f *otaFleet) Health(ctx context.Context, ids []string, since time.Time) (ota.HealthCounts, error) {
	h, err := f.reg.Health(ctx, ids, since)
	return ota.HealthCounts{Lockers: len(ids), Reconnects: h.Reconnects, CommandFailures: h.CommandFailures, Faults: h.Faults}, err
}
