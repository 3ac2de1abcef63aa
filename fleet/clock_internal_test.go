package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClockOffsetEstimate: the estimate is the offset of the least delayed
// message; a backlog the locker sends after an outage (old ts) does not pull
// it down; a clock set right shows within two windows; no samples, no
// estimate.
func TestClockOffsetEstimate(t *testing.T) {
	c := newClocks()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	_, ok := c.offset("L1", now)
	require.False(t, ok)

	ahead := 8 * time.Second // the locker's clock
	send := func(at time.Time, delay time.Duration) {
		c.observe("L1", at.Add(ahead).UnixMilli(), at.Add(delay))
	}
	send(now, 40*time.Millisecond)
	send(now.Add(time.Second), 3*time.Millisecond)
	c.observe("L1", now.Add(-time.Hour).UnixMilli(), now.Add(2*time.Second)) // a kept event from an hour ago
	got, ok := c.offset("L1", now.Add(3*time.Second))
	require.True(t, ok)
	require.Equal(t, ahead-3*time.Millisecond, got)

	// NTP puts the clock right: the old estimate is gone after two windows.
	ahead = 0
	for i := 1; i <= 12; i++ {
		send(now.Add(time.Duration(i)*time.Minute), 5*time.Millisecond)
	}
	got, ok = c.offset("L1", now.Add(12*time.Minute))
	require.True(t, ok)
	require.Equal(t, -5*time.Millisecond, got)

	// A clock behind is negative.
	ahead = -30 * time.Second
	c.observe("L2", now.Add(ahead).UnixMilli(), now.Add(10*time.Millisecond))
	got, _ = c.offset("L2", now)
	require.Equal(t, -30*time.Second-10*time.Millisecond, got)

	_, ok = c.offset("L1", now.Add(30*time.Minute))
	require.False(t, ok, "nothing heard for two windows")
}
