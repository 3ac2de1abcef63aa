package lockersim

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// scheduler runs timed work for all lockers of a simulation: one goroutine keeps
// a heap of due times, a fixed pool of workers runs what is due. Ten thousand
// lockers thus cost one timer and a few goroutines, not a ticker and a goroutine
// each. When the workers fall behind, the timing goroutine waits for a free
// worker (the work queue is bounded): work is late, never dropped.
type scheduler struct {
	mu   sync.Mutex
	h    schedHeap
	wake chan struct{} // cap 1: the earliest item changed
	work chan func()
}

type schedItem struct {
	at time.Time
	fn func()
}

type schedHeap []schedItem

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h schedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)        { *h = append(*h, x.(schedItem)) }
func (h *schedHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = schedItem{}
	*h = old[:len(old)-1]
	return it
}

func newScheduler() *scheduler {
	return &scheduler{wake: make(chan struct{}, 1), work: make(chan func(), 256)}
}

// At runs fn at t (or as soon as a worker is free after t) on a worker.
// fn must not block for long; it checks itself whether it is still wanted.
func (s *scheduler) At(t time.Time, fn func()) {
	s.mu.Lock()
	heap.Push(&s.h, schedItem{at: t, fn: fn})
	first := s.h[0].at.Equal(t)
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// After runs fn after d.
func (s *scheduler) After(d time.Duration, fn func()) { s.At(time.Now().Add(d), fn) }

// Run runs the timing goroutine and the workers until ctx ends; pending
// items are dropped then. It returns when every goroutine it started has stopped.
func (s *scheduler) Run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case fn := <-s.work:
					fn()
				}
			}
		})
	}
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var due []func()
		now := time.Now()
		for len(s.h) > 0 && !s.h[0].at.After(now) {
			due = append(due, heap.Pop(&s.h).(schedItem).fn)
		}
		next := time.Hour
		if len(s.h) > 0 {
			next = s.h[0].at.Sub(now)
		}
		s.mu.Unlock()
		for _, fn := range due {
			select {
			case s.work <- fn:
			case <-ctx.Done():
				return
			}
		}
		if len(due) > 0 {
			continue // time has passed while handing out work
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}
