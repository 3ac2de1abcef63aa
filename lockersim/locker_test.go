package lockersim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
	"github.com/stretchr/testify/require"
)

func testEnv(t *testing.T, mod func(*Config)) *lockerEnv {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Cells = 4
	if mod != nil {
		mod(&cfg)
	}
	return &lockerEnv{cfg: &cfg, log: slog.New(slog.DiscardHandler), sched: newScheduler(), stats: &Stats{}}
}

// queued decodes what a locker has in its outbox: topic kind and JSON object.
type queuedMsg struct {
	kind protocol.Kind
	raw  []byte
	obj  map[string]any
}

func queued(t *testing.T, l *Locker) []queuedMsg {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []queuedMsg
	for _, m := range l.out.msgs {
		_, kind, err := protocol.ParseTopic(m.topic)
		require.NoError(t, err)
		var obj map[string]any
		require.NoError(t, json.Unmarshal(m.payload, &obj))
		out = append(out, queuedMsg{kind: kind, raw: m.payload, obj: obj})
	}
	return out
}

func clearOutbox(l *Locker) {
	l.mu.Lock()
	l.out.discard()
	l.mu.Unlock()
}

func rpc(t *testing.T, l *Locker, req map[string]any) {
	t.Helper()
	data, err := json.Marshal(req)
	require.NoError(t, err)
	l.handleRPC(data)
}

// lastResponse returns the last rpc/res in the outbox.
func lastResponse(t *testing.T, l *Locker) protocol.Response {
	t.Helper()
	q := queued(t, l)
	for i := len(q) - 1; i >= 0; i-- {
		if q[i].kind == protocol.KindRPCRes {
			var res protocol.Response
			require.NoError(t, json.Unmarshal(q[i].raw, &res))
			return res
		}
	}
	t.Fatal("no rpc/res queued")
	return protocol.Response{}
}

func kinds(q []queuedMsg) []protocol.Kind {
	var k []protocol.Kind
	for _, m := range q {
		k = append(k, m.kind)
	}
	return k
}

func TestCellNames(t *testing.T) {
	require.Equal(t, []string{"A01", "A02", "A03"}, CellNames(3))
	n := CellNames(25)
	require.Equal(t, "A10", n[9])
	require.Equal(t, "B01", n[10])
	require.Equal(t, "C05", n[24])
	require.Equal(t, "Z10", CellNames(260)[259])
	require.Equal(t, "SIM-00001", LockerID("SIM-", 1, 10))
	require.Equal(t, "SIM-012345", LockerID("SIM-", 12345, 200000))
}

func TestBootCounterPersistsAcrossBoots(t *testing.T) {
	env := testEnv(t, nil)
	l, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, l.boot)
	l.mu.Lock()
	h1 := l.headerLocked()
	h2 := l.headerLocked()
	l.mu.Unlock()
	require.EqualValues(t, 1, h1.Seq)
	require.EqualValues(t, 2, h2.Seq)
	require.InDelta(t, time.Now().UnixMilli(), h2.TS, 1000)

	// A simulated reboot: boot+1 on disk, seq starts again.
	l.mu.Lock()
	require.NoError(t, l.bootLocked())
	h3 := l.headerLocked()
	l.mu.Unlock()
	require.EqualValues(t, 2, h3.Boot)
	require.EqualValues(t, 1, h3.Seq)
	require.True(t, h2.Before(h3), "a message after a reboot is newer whatever its seq")

	// A new process (same data dir) boots again.
	l2, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	require.EqualValues(t, 3, l2.boot)
	st, err := loadState(env.cfg.DataDir, "L1")
	require.NoError(t, err)
	require.EqualValues(t, 3, st.Boot)

	other, err := newLocker(env, "L2", nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, other.boot, "each locker has its own counter")
}

func TestClockSkewShiftsTimestamps(t *testing.T) {
	env := testEnv(t, func(c *Config) { c.ClockSkew = -90 * time.Second })
	l, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	l.mu.Lock()
	h := l.headerLocked()
	l.mu.Unlock()
	require.InDelta(t, time.Now().Add(-90*time.Second).UnixMilli(), h.TS, 1000)
}

func TestKeyCachePersistsUntilNotAfter(t *testing.T) {
	dir := t.TempDir()
	path := keysPath(dir, "L1")
	now := int64(1_000_000)
	k, err := loadKeyCache(path, now)
	require.NoError(t, err)
	require.NoError(t, k.put("c-1", keyEntry{NotAfter: now + 1000, Result: json.RawMessage(`{"opened":true}`)}, now))
	require.NoError(t, k.put("c-2", keyEntry{NotAfter: now + 5000, Error: &protocol.Error{Code: "jammed", Message: "x"}}, now))

	// Read back from disk, as after a reboot.
	k2, err := loadKeyCache(path, now+10)
	require.NoError(t, err)
	e, ok := k2.get("c-1", now+10)
	require.True(t, ok)
	require.JSONEq(t, `{"opened":true}`, string(e.Result))
	e, ok = k2.get("c-2", now+10)
	require.True(t, ok)
	require.Equal(t, "jammed", e.Error.Code)

	// After c-1's not_after it is gone, in memory and, at the next load, on disk.
	_, ok = k2.get("c-1", now+1001)
	require.False(t, ok)
	k3, err := loadKeyCache(path, now+1001)
	require.NoError(t, err)
	require.Equal(t, 1, k3.len())
	require.NoError(t, k3.put("c-3", keyEntry{NotAfter: now + 9000}, now+6000)) // prunes c-2 too
	k4, err := loadKeyCache(path, now+6000)
	require.NoError(t, err)
	require.Equal(t, 1, k4.len())
	_, ok = k4.get("c-3", now+6000)
	require.True(t, ok)
}

// TestKeyCacheJournal: the file grows by one line a key, is rewritten with
// the live keys when it holds many more lines, survives a torn last line,
// and takes over a cache of the older one-object format.
func TestKeyCacheJournal(t *testing.T) {
	dir := t.TempDir()
	path := keysPath(dir, "L1")
	now := int64(1_000_000)
	k, err := loadKeyCache(path, now)
	require.NoError(t, err)
	lines := func() int {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		return bytes.Count(data, []byte("\n"))
	}
	for i := range 500 { // each key lives 10 ms: at most a few are live at once
		at := now + int64(i)*5
		require.NoError(t, k.put(fmt.Sprintf("c-%d", i), keyEntry{NotAfter: at + 10, Result: json.RawMessage(`{"opened":true}`)}, at))
		require.LessOrEqual(t, lines(), 4*k.len()+64, "compacted as it goes")
	}
	require.NoError(t, k.put("last", keyEntry{NotAfter: now + 1_000_000}, now+2500))

	// A crash in the middle of a put leaves a torn line at the end.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"k":"torn","e":{"not_af`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	k2, err := loadKeyCache(path, now+2600)
	require.NoError(t, err)
	_, ok := k2.get("last", now+2600)
	require.True(t, ok)
	_, ok = k2.get("torn", now+2600)
	require.False(t, ok)

	// A cache written by an older lockersim (ID.keys.json) is taken over.
	dir2 := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir2, "L2.keys.json"), []byte(`{"c-9":{"not_after":2000000,"result":{"opened":true}}}`), 0o644))
	k3, err := loadKeyCache(keysPath(dir2, "L2"), now)
	require.NoError(t, err)
	e, ok := k3.get("c-9", now)
	require.True(t, ok)
	require.JSONEq(t, `{"opened":true}`, string(e.Result))
	_, err = os.Stat(filepath.Join(dir2, "L2.keys.json"))
	require.ErrorIs(t, err, fs.ErrNotExist, "the old file is gone once its keys are in the journal")
	k4, err := loadKeyCache(keysPath(dir2, "L2"), now)
	require.NoError(t, err)
	_, ok = k4.get("c-9", now)
	require.True(t, ok)
}

func TestCellOpenIsIdempotentAcrossReboots(t *testing.T) {
	env := testEnv(t, nil)
	l, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	notAfter := time.Now().Add(time.Minute).UnixMilli()
	req := map[string]any{"id": "c-81", "method": "cell.open", "params": map[string]any{"cell": "A02"}, "key": "c-81", "not_after": notAfter}
	rpc(t, l, req)

	q := queued(t, l)
	require.Equal(t, []protocol.Kind{protocol.KindEvents, protocol.KindState, protocol.KindRPCRes}, kinds(q))
	require.Equal(t, "door_opened", q[0].obj["type"])
	require.Equal(t, "A02", q[0].obj["cell"])
	require.Equal(t, "command:c-81", q[0].obj["cause"])
	require.NotEmpty(t, q[0].obj["id"])
	require.Equal(t, map[string]any{"door": "open", "lock": "unlocked", "occupied": false}, q[1].obj["cells"].(map[string]any)["A02"])
	require.JSONEq(t, `{"id":"c-81","result":{"opened":true}}`, string(q[2].raw))

	// The door is closed again by someone; the hub re-sends the same command
	// (its result was lost): the first result, no second opening.
	l.mu.Lock()
	l.closeLocked("A02")
	l.mu.Unlock()
	clearOutbox(l)
	rpc(t, l, req)
	q = queued(t, l)
	require.Equal(t, []protocol.Kind{protocol.KindRPCRes}, kinds(q))
	require.JSONEq(t, `{"id":"c-81","result":{"opened":true}}`, string(q[0].raw))
	require.Equal(t, protocol.DoorClosed, l.View(true).Cells["A02"].Door)

	// Also after a reboot: the key cache is on disk.
	l.mu.Lock()
	require.NoError(t, l.bootLocked())
	l.mu.Unlock()
	clearOutbox(l)
	rpc(t, l, req)
	require.Equal(t, []protocol.Kind{protocol.KindRPCRes}, kinds(queued(t, l)))
	require.EqualValues(t, 2, env.stats.RPCRepeats.Load())

	// And in a new process with the same data directory.
	l2, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	rpc(t, l2, req)
	require.Equal(t, []protocol.Kind{protocol.KindRPCRes}, kinds(queued(t, l2)))
	require.Equal(t, protocol.DoorClosed, l2.View(true).Cells["A02"].Door)
}

func TestRPCErrors(t *testing.T) {
	env := testEnv(t, nil)
	l, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	future := time.Now().Add(time.Minute).UnixMilli()
	for _, tc := range []struct {
		name string
		req  string
		code string
	}{
		{"expired", `{"id":"c-1","method":"cell.open","params":{"cell":"A01"},"key":"c-1","not_after":1000}`, protocol.ErrCodeExpired},
		{"unknown method", `{"id":"c-2","method":"coffee.make"}`, protocol.ErrCodeUnknownMethod},
		{"unknown cell", `{"id":"c-3","method":"cell.open","params":{"cell":"Z99"},"key":"c-3","not_after":` + jsonInt(future) + `}`, protocol.ErrCodeUnknownCell},
		{"no cell", `{"id":"c-4","method":"cell.open","params":{}}`, protocol.ErrCodeBadParams},
		{"malformed", `{"id":"c-5","method":"cell.open","not_after":"soon"}`, protocol.ErrCodeBadParams},
		{"no method", `{"id":"c-6"}`, protocol.ErrCodeBadParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOutbox(l)
			l.handleRPC([]byte(tc.req))
			res := lastResponse(t, l)
			require.NotNil(t, res.Error, "%+v", res)
			require.Equal(t, tc.code, res.Error.Code)
			require.Empty(t, res.Result)
		})
	}
	// An expired request does nothing.
	require.Equal(t, protocol.DoorClosed, l.View(true).Cells["A01"].Door)

	// Without an id there is nobody to answer.
	clearOutbox(l)
	l.handleRPC([]byte(`{"method":"cell.open"}`))
	l.handleRPC([]byte(`not json`))
	require.Empty(t, queued(t, l))
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestRPCStatusDisplayAndJam(t *testing.T) {
	env := testEnv(t, func(c *Config) { c.JamPct = 100 })
	l, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	l.handleRPC([]byte(`{"id":"s-1","method":"cell.status","params":{"cell":"A03"}}`))
	require.JSONEq(t, `{"cell":"A03","door":"closed","lock":"locked","occupied":false}`, string(lastResponse(t, l).Result))
	l.handleRPC([]byte(`{"id":"d-1","method":"display.message","params":{"text":"hello","ttl_s":5}}`))
	require.JSONEq(t, `{"shown":true}`, string(lastResponse(t, l).Result))
	require.Equal(t, "hello", l.View(false).Display)
	l.handleRPC([]byte(`{"id":"c-1","method":"cell.open","params":{"cell":"A01"},"key":"c-1"}`))
	res := lastResponse(t, l)
	require.Equal(t, protocol.ErrCodeJammed, res.Error.Code)
	require.Equal(t, protocol.DoorClosed, l.View(true).Cells["A01"].Door)
}

func TestDesiredIsReportedAndRemembered(t *testing.T) {
	env := testEnv(t, nil)
	l, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	l.handleDesired([]byte(`{"version":7,"config":{"display":"hi"}}`))
	q := queued(t, l)
	require.Len(t, q, 1)
	require.Equal(t, protocol.KindState, q[0].kind)
	require.EqualValues(t, 7, q[0].obj["desired_version"])
	l2, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	l2.mu.Lock()
	full := l2.fullStateLocked()
	l2.mu.Unlock()
	require.EqualValues(t, 7, *full.DesiredVersion, "the applied version survives a reboot")
	require.True(t, full.Full)
	require.Equal(t, Firmware, full.Firmware)
	require.Len(t, full.Cells, 4)
	require.True(t, *full.Power.Mains)
}

func TestOutboxBoundedKeepsOldest(t *testing.T) {
	o := newOutbox(3)
	for i := range 3 {
		require.NoError(t, o.add("t", []byte{byte('a' + i)}))
	}
	require.ErrorIs(t, o.add("t", []byte("d")), ErrQueueFull)
	require.Equal(t, 3, o.len())
	require.Equal(t, "a", string(o.msgs[0].payload), "the oldest is kept")

	env := testEnv(t, func(c *Config) { c.QueueSize = 2 })
	l, err := newLocker(env, "L1", nil)
	require.NoError(t, err)
	l.Tamper()
	l.Tamper()
	l.Tamper()
	require.Len(t, queued(t, l), 2)
	require.EqualValues(t, 1, env.stats.Dropped.Load())
	require.EqualValues(t, 1, l.View(false).Dropped)
}

func TestOutboxWindowAndAcks(t *testing.T) {
	o := newOutbox(10)
	for i := range 5 {
		require.NoError(t, o.add("t", []byte{byte('a' + i)}))
	}
	require.Empty(t, o.toSend(time.Now()), "nothing is sent while offline")
	require.Zero(t, o.connected(2))
	first := o.toSend(time.Now())
	require.Len(t, first, 2, "window of 2")
	require.Empty(t, o.toSend(time.Now()))
	_, ok := o.acked(first[1].id) // out of order is fine
	require.True(t, ok)
	_, ok = o.acked(first[1].id)
	require.False(t, ok, "a duplicate PUBACK completes nothing")
	next := o.toSend(time.Now())
	require.Len(t, next, 1)
	require.Equal(t, "c", string(next[0].payload))
	require.NotEqual(t, first[0].id, next[0].id)

	// Reconnect: everything unacknowledged goes again, oldest first.
	o.disconnected()
	require.Equal(t, 2, o.connected(10), "a and c were sent before")
	again := o.toSend(time.Now())
	var got string
	for _, m := range again {
		got += string(m.payload)
	}
	require.Equal(t, "acde", got)
}

func TestOutboxPacketIDsSkipInFlight(t *testing.T) {
	o := newOutbox(70000)
	o.connected(65535)
	for range 65535 {
		require.NoError(t, o.add("t", nil))
	}
	sent := o.toSend(time.Now())
	require.Len(t, sent, 65535)
	seen := map[uint16]bool{}
	for _, m := range sent {
		require.NotZero(t, m.id)
		require.False(t, seen[m.id])
		seen[m.id] = true
	}
	_, ok := o.acked(500)
	require.True(t, ok)
	require.NoError(t, o.add("t", nil))
	last := o.toSend(time.Now())
	require.Len(t, last, 1)
	require.EqualValues(t, 500, last[0].id, "the only free id")
}

func TestBackoffFullJitterBounds(t *testing.T) {
	b := DefaultBackoff
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for n, w := range want {
		require.Equal(t, w*time.Second, b.Ceiling(n), "ceiling of retry %d", n)
	}
	require.Equal(t, 30*time.Second, b.Ceiling(1000), "no overflow")
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 8 {
		c := b.Ceiling(n)
		var sum time.Duration
		var lo, hi bool
		const samples = 4000
		for range samples {
			d := b.Delay(n, r)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, c)
			sum += d
			lo = lo || d < c/10
			hi = hi || d > c*9/10
		}
		// Full jitter: uniform over [0, ceiling], so the mean is ceiling/2 and
		// both ends are reached.
		mean := sum / samples
		require.InDelta(t, float64(c/2), float64(mean), float64(c)*0.05, "retry %d", n)
		require.True(t, lo && hi, "retry %d: draws spread over the whole range", n)
	}
}
