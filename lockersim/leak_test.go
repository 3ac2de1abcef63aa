package lockersim

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestSimStopsEveryGoroutine: after Stop nothing the simulation started is
// still running (lockers, readers, keepalive timers, scheduler, control API).
func TestSimStopsEveryGoroutine(t *testing.T) {
	b := newScriptBroker(t, MQTT5)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := DefaultConfig()
	cfg.Hub = b.addr
	cfg.Plain = true
	cfg.DataDir = t.TempDir()
	cfg.Lockers = 5
	cfg.Cells = 2
	cfg.Ramp = 0
	cfg.Control = "127.0.0.1:0"
	cfg.Telemetry = 50 * time.Millisecond
	cfg.Keepalive = time.Second
	s, err := NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, s.Start(ctx))
	require.Eventually(t, func() bool { return s.Stats().Connected.Load() == 5 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, s.Locker(LockerID(cfg.Prefix, 1, 5)).OpenDoor("A01", "service:t")) // leaves no auto-close timer behind either
	s.Locker(LockerID(cfg.Prefix, 2, 5)).GoOffline(time.Hour)
	cancel()
	s.Stop()
	require.Zero(t, s.Stats().Connected.Load())
}
