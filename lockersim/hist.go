package lockersim

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// latencyHist is a lock-free histogram of durations in microseconds with
// about 1.5% relative precision (64 linear sub-buckets per power of two), up to
// about 2³⁶ µs. Memory is fixed (a few KiB) however many samples it takes.
type latencyHist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	maxUs  atomic.Int64
}

const (
	histSubBits = 6 // 64 sub-buckets
	histSub     = 1 << histSubBits
	histBuckets = (37 - histSubBits) * histSub
)

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - histSubBits // ≥ 1
	idx := e*histSub + int(us>>(e-1)) - histSub
	return min(idx, histBuckets-1)
}

// histLow is the smallest value that falls into bucket i.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i / histSub
	sub := uint64(i%histSub) + histSub
	return sub << (e - 1)
}

func (h *latencyHist) record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[histIndex(uint64(us))].Add(1)
	h.n.Add(1)
	for {
		m := h.maxUs.Load()
		if us <= m || h.maxUs.CompareAndSwap(m, us) {
			break
		}
	}
}

// quantile returns the q-quantile (0 < q ≤ 1) in milliseconds: the low edge of
// the bucket holding it (the exact maximum for q = 1).
func (h *latencyHist) quantileMs(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if q >= 1 {
		return float64(h.maxUs.Load()) / 1000
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return float64(histLow(i)) / 1000
		}
	}
	return float64(h.maxUs.Load()) / 1000
}
