// Command tracestalls reads a Go execution trace (runtime/trace, e.g. the
// commands benchmark's BENCH_TRACE file) on standard input and prints, for
// every 250 ms, the CPU samples by component (when the CPU profiler ran with
// the trace), whether a GC mark phase was running and the longest scheduling
// delay; then, for the window -from…-to (seconds into the trace), every
// goroutine that blocked longer than -min, with where it blocked. Tails of a
// latency benchmark that bunch up show here as a stall: waiting for the CPU
// (scheduling delay), for PostgreSQL (PG: a read in pgconn), or for a lock.
//
//	cd scripts/tracestalls && go run . -from 3.0 -to 3.2 < /tmp/stall.trace
//
// It is a module of its own so that golang.org/x/exp is not a dependency of
// the hub.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/exp/trace"
)

const bucket = 250e6 // ns

type interval struct {
	samples int
	cats    map[string]int
	gc      bool
	maxWait float64 // ms runnable before running
	waits10 int     // goroutines runnable for over 10 ms
}

type blocked struct {
	t     trace.Time
	where string
}

func main() {
	from := flag.Float64("from", 0, "window start, seconds into the trace")
	to := flag.Float64("to", 1e9, "window end, seconds into the trace")
	minWait := flag.Float64("min", 15, "blocked longer than this many ms (in the window)")
	flag.Parse()
	r, err := trace.NewReader(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracestalls:", err)
		os.Exit(1)
	}
	intervals := map[int64]*interval{}
	at := func(t trace.Time) *interval {
		k := int64(t) / bucket
		if intervals[k] == nil {
			intervals[k] = &interval{cats: map[string]int{}}
		}
		return intervals[k]
	}
	var t0 trace.Time = -1
	var markStart trace.Time = -1
	runnable := map[trace.GoID]trace.Time{}
	blockedAt := map[trace.GoID]blocked{}
	var waits []string
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "tracestalls:", err)
			os.Exit(1)
		}
		if t0 < 0 {
			t0 = ev.Time()
		}
		secs := func(t trace.Time) float64 { return float64(t-t0) / 1e9 }
		switch ev.Kind() {
		case trace.EventStackSample:
			x := at(ev.Time())
			x.samples++
			x.cats[component(ev.Stack())]++
		case trace.EventRangeBegin:
			if strings.Contains(ev.Range().Name, "mark") {
				markStart = ev.Time()
			}
		case trace.EventRangeEnd:
			if strings.Contains(ev.Range().Name, "mark") && markStart >= 0 {
				for t := markStart; t <= ev.Time(); t += bucket {
					at(t).gc = true
				}
				markStart = -1
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			id := st.Resource.Goroutine()
			was, is := st.Goroutine()
			switch {
			case was == trace.GoRunning && is == trace.GoWaiting:
				blockedAt[id] = blocked{ev.Time(), where(ev.Stack())}
			case was == trace.GoWaiting && is == trace.GoRunnable:
				if b, ok := blockedAt[id]; ok {
					d := float64(ev.Time()-b.t) / 1e6
					if s := secs(b.t); d > *minWait && s >= *from && s <= *to {
						waits = append(waits, fmt.Sprintf("%8.3fs %7.1f ms %s", s, d, b.where))
					}
					delete(blockedAt, id)
				}
			case was == trace.GoRunnable && is == trace.GoRunning:
				if s, ok := runnable[id]; ok {
					w := float64(ev.Time()-s) / 1e6
					x := at(ev.Time())
					x.maxWait = max(x.maxWait, w)
					if w > 10 {
						x.waits10++
					}
					delete(runnable, id)
				}
			}
			if is == trace.GoRunnable {
				runnable[id] = ev.Time()
			}
		}
	}
	var keys []int64
	for k := range intervals {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	base := int64(t0) / bucket
	fmt.Println("  time  GC  cpu samples  longest runnable  runnable >10ms  busiest components")
	for _, k := range keys {
		x := intervals[k]
		type kv struct {
			name string
			n    int
		}
		var top []kv
		for c, n := range x.cats {
			top = append(top, kv{c, n})
		}
		sort.Slice(top, func(i, j int) bool { return top[i].n > top[j].n })
		var busiest []string
		for i := 0; i < len(top) && i < 4; i++ {
			busiest = append(busiest, fmt.Sprintf("%s:%d", top[i].name, top[i].n))
		}
		gc := "  "
		if x.gc {
			gc = "GC"
		}
		fmt.Printf("%6.2fs %s %11d %14.1f ms %15d  %s\n", float64(k-base)*bucket/1e9, gc, x.samples, x.maxWait, x.waits10, strings.Join(busiest, " "))
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	fmt.Printf("\nblocked over %.0f ms between %.2fs and %.2fs:\n", *minWait, *from, *to)
	for _, w := range waits {
		fmt.Println(w)
	}
}

// component names what a CPU sample was doing: the GC, or the outermost
// lockerhub or mochi function on its stack.
func component(st trace.Stack) string {
	var frames []string
	for f := range st.Frames() {
		frames = append(frames, f.Func)
	}
	for _, f := range frames {
		if strings.Contains(f, "gcBgMarkWorker") {
			return "GC"
		}
	}
	for i := len(frames) - 1; i >= 0; i-- {
		if f := frames[i]; (strings.Contains(f, "lockerhub/lockerhub/") || strings.Contains(f, "mochi-mqtt")) && !strings.Contains(f, "_test.") {
			return short(f)
		}
	}
	if len(frames) > 0 {
		return short(frames[len(frames)-1])
	}
	return "?"
}

// where is the innermost six frames of a blocked goroutine, marked PG when
// it waits for PostgreSQL.
func where(st trace.Stack) string {
	var parts []string
	pg := false
	for f := range st.Frames() {
		if len(parts) < 6 {
			parts = append(parts, short(f.Func))
		}
		pg = pg || strings.Contains(f.Func, "pgconn")
	}
	s := strings.Join(parts, " < ")
	if pg {
		s = "PG " + s
	}
	return s
}

func short(f string) string {
	if i := strings.LastIndex(f, "/"); i >= 0 {
		return f[i+1:]
	}
	return f
}
