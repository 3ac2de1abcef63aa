package fleet

import (
	"sync"
	"time"
)

// clockWindow is how long one window of a locker's clock samples lasts; an
// estimate is the best of the current and the previous window, so it follows
// a clock that was set right within two windows.
const clockWindow = 5 * time.Minute

// clocks estimates each locker's clock offset (DESIGN decision 15) from the
// `ts` of its state reports and events against the hub's receive time.
//
// ts − received is the offset minus the message's delay, and the delay is
// never negative: the largest value seen in a window is the estimate with
// the shortest delay. Messages a locker kept while offline and sends later
// have long delays, so they lower nothing; only live ones count.
type clocks struct {
	mu sync.Mutex
	m  map[string]*clockSamples
}

type clockSamples struct {
	start     time.Time // of the current window
	cur, prev int64     // the largest ts − received in each window, ms
	hasPrev   bool
}

func newClocks() *clocks { return &clocks{m: map[string]*clockSamples{}} }

func (c *clocks) observe(lockerID string, tsMillis int64, received time.Time) {
	d := tsMillis - received.UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m[lockerID]
	switch {
	case s == nil:
		c.m[lockerID] = &clockSamples{start: received, cur: d}
		return
	case received.Sub(s.start) >= 2*clockWindow: // nothing for a while: start afresh
		*s = clockSamples{start: received, cur: d}
		return
	case received.Sub(s.start) >= clockWindow:
		s.prev, s.hasPrev = s.cur, true
		s.start, s.cur = received, d
		return
	}
	s.cur = max(s.cur, d)
}

// offset returns the locker's estimated clock offset (positive: its clock
// is ahead of the hub's), or false without a sample in the last two windows.
func (c *clocks) offset(lockerID string, now time.Time) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m[lockerID]
	if s == nil || now.Sub(s.start) >= 2*clockWindow {
		return 0, false
	}
	best := s.cur
	if s.hasPrev && now.Sub(s.start) < clockWindow {
		best = max(best, s.prev)
	}
	return time.Duration(best) * time.Millisecond, true
}
