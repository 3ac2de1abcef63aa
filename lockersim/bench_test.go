package lockersim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/protocol"
)

// TestBenchAgainstMosquitto runs the command line as a person would and
// parses its one JSON line.
func TestBenchAgainstMosquitto(t *testing.T) {
	needMosquitto(t)
	for _, tc := range []struct {
		name string
		args []string
		qos  int
	}{
		{"qos1 max", []string{"--qos", "1", "--mqtt", "5"}, 1},
		{"qos1 rate mqtt4", []string{"--qos", "1", "--mqtt", "4", "--rate", "500"}, 1},
		{"qos0 rate", []string{"--qos", "0", "--rate", "500"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"bench", "--broker", mosquittoAddr, "--connections", "5", "--duration", "1s",
				"--size", "300", "--prefix", strings.ToUpper(uniqueName(t)) + "-"}, tc.args...)
			code := Main(t.Context(), args, &stdout, &stderr)
			require.Equal(t, 0, code, stderr.String())
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			require.Len(t, lines, 1, "exactly one line: %q", stdout.String())
			var res map[string]any
			require.NoError(t, json.Unmarshal([]byte(lines[0]), &res))
			for _, k := range []string{"connections", "connect_seconds", "connections_per_s", "sent", "acked", "acked_per_s",
				"ack_p50_ms", "ack_p99_ms", "ack_max_ms", "errors"} {
				require.Contains(t, res, k)
			}
			require.EqualValues(t, 5, res["connections"])
			require.EqualValues(t, 0, res["errors"], res["first_error"])
			require.Greater(t, res["sent"].(float64), 50.0)
			if tc.qos == 1 {
				require.Equal(t, res["sent"], res["acked"], "every QoS 1 message acknowledged")
				require.Greater(t, res["ack_p99_ms"].(float64), 0.0)
				require.GreaterOrEqual(t, res["ack_max_ms"].(float64), res["ack_p99_ms"].(float64))
				require.GreaterOrEqual(t, res["ack_p99_ms"].(float64), res["ack_p50_ms"].(float64))
			} else {
				require.EqualValues(t, 0, res["acked"])
			}
		})
	}
}

func TestBenchIdle(t *testing.T) {
	needMosquitto(t)
	res, err := Bench(t.Context(), BenchConfig{
		Broker: mosquittoAddr, MQTTVersion: MQTT5, Prefix: strings.ToUpper(uniqueName(t)) + "-",
		Connections: 50, DialConcurrency: 8, Inflight: 1, Duration: 200e6, TopicTemplate: "x/{id}", Idle: true, Keepalive: 60e9,
	}, nil)
	require.NoError(t, err)
	require.Equal(t, 50, res.Connections)
	require.Equal(t, "idle", res.Mode)
	require.Zero(t, res.Sent)
	require.Zero(t, res.Errors)
	require.Greater(t, res.ConnectionsPerS, 0.0)
}

func TestBenchRefusesNonLoopbackAndUnbounded(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--broker", "10.0.0.1:1883"},
		{"bench", "--broker", "example.com:1883"},
		{"bench", "--duration", "2h"},
		{"bench", "--connections", "50000"},
		{"bench", "--qos", "2"},
	} {
		var stdout, stderr bytes.Buffer
		require.NotEqual(t, 0, Main(t.Context(), args, &stdout, &stderr), "%v", args)
		require.Empty(t, stdout.String())
	}
	var stdout, stderr bytes.Buffer
	require.NotEqual(t, 0, Main(t.Context(), []string{"run", "--hub", "192.168.1.1:8883", "--plain"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "not a loopback address")
}

func TestPayloadIsTelemetryTheHubAcceptsOfAboutSize(t *testing.T) {
	for _, size := range []int{0, 100, 200, 1000, protocol.MaxTelemetryBytes} {
		g := newPayloadGen(size, 1795389000)
		for i := range 3 {
			p := g.next()
			m, err := protocol.DecodeTelemetry(p)
			require.NoError(t, err, string(p))
			require.EqualValues(t, 1795389000, m.Boot)
			require.EqualValues(t, i+1, m.Seq)
			require.NotZero(t, m.TS)
			require.Subset(t, keys(m.M), []string{"temp_c", "humidity_pct", "battery_v", "mains", "rssi_dbm"})
			if size > 150 {
				require.InDelta(t, size, len(p), 1, "size %d", size)
				require.Len(t, m.M, 6, "padded with one measurement")
			} else {
				require.Len(t, m.M, 5)
			}
		}
	}
}

func keys(m map[string]float64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestHelp(t *testing.T) {
	for _, cmd := range []string{"run", "bench"} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 0, Main(t.Context(), []string{cmd, "--help"}, &stdout, &stderr))
		require.Contains(t, stdout.String(), "lockersim "+cmd)
		if cmd == "run" {
			require.Contains(t, stdout.String(), "--drop-acks-pct")
			require.Contains(t, stdout.String(), "NEW messages are dropped")
		}
	}
}

func TestStatePayloadIsAValidPartialReport(t *testing.T) {
	g := newStateGen(1795389000)
	cells, doors, occupied := map[string]bool{}, map[string]bool{}, map[bool]bool{}
	var lastTS int64
	for i := 1; i <= 300; i++ {
		p := g.next()
		s, err := protocol.DecodeState(p)
		require.NoError(t, err, string(p))
		require.EqualValues(t, 1795389000, s.Boot)
		require.EqualValues(t, i, s.Seq)
		require.EqualValues(t, i, g.seq)
		require.GreaterOrEqual(t, s.TS, lastTS)
		lastTS = s.TS
		require.False(t, s.Full)
		require.Nil(t, s.Power)
		require.Equal(t, fmt.Sprintf("b-%d", i), s.Firmware)
		require.Len(t, s.Cells, 1, string(p))
		for name, c := range s.Cells {
			require.Regexp(t, `^A(0[1-9]|10)$`, name)
			require.Contains(t, []string{protocol.DoorOpen, protocol.DoorClosed}, c.Door)
			require.Empty(t, c.Lock)
			require.NotNil(t, c.Occupied)
			cells[name], doors[c.Door], occupied[*c.Occupied] = true, true, true
		}
	}
	require.Len(t, cells, StateBenchCells, "every cell A01–A10 drawn in 300 reports")
	require.Len(t, doors, 2)
	require.Len(t, occupied, 2)
}

// TestBenchStateWithSendLog: state payloads on lockers/{id}/state, and a send
// log line for every message, matching what a subscriber receives.
func TestBenchStateWithSendLog(t *testing.T) {
	needMosquitto(t)
	base := uniqueName(t)
	type got struct {
		topic    string
		firmware string
	}
	recv := make(chan got, 10000)
	sub, err := Connect(t.Context(), ClientOptions{Addr: mosquittoAddr, ClientID: base + "-sub", Subscribe: []string{base + "/#"},
		OnMessage: func(topic string, payload []byte) {
			s, err := protocol.DecodeState(payload) // no require here: not the test's goroutine
			if err != nil {
				s.Firmware = "invalid: " + err.Error()
			}
			recv <- got{topic, s.Firmware}
		}})
	require.NoError(t, err)
	go func() { _ = sub.ReadLoop() }()
	t.Cleanup(sub.Close)

	logFile := filepath.Join(t.TempDir(), "sent.log")
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Main(t.Context(), []string{"bench", "--broker", mosquittoAddr, "--connections", "3", "--duration", "1s", "--rate", "150",
		"--prefix", "S-", "--topic-template", base + "/{id}/state", "--payload", "state", "--send-log", logFile}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	end := time.Now()
	var res BenchResult
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res))
	require.Zero(t, res.Errors, res.FirstError)
	require.Equal(t, "state", res.Payload)
	require.Greater(t, res.Sent, int64(100))
	require.Equal(t, res.Sent, res.Acked)
	require.Equal(t, res.Sent, res.SendLogLines)
	require.Zero(t, res.SendLogDropped)

	data, err := os.ReadFile(logFile)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	require.Len(t, lines, int(res.Sent))
	lastSeq := map[string]uint64{}
	logged := map[string]bool{}
	for _, l := range lines {
		f := strings.Fields(l)
		require.Len(t, f, 3, l)
		seq, err := strconv.ParseUint(f[1], 10, 64)
		require.NoError(t, err)
		ns, err := strconv.ParseInt(f[2], 10, 64)
		require.NoError(t, err)
		require.Equal(t, lastSeq[f[0]]+1, seq, "seq counts from 1 per connection: %s", l)
		lastSeq[f[0]] = seq
		require.True(t, ns >= start.UnixNano() && ns <= end.UnixNano(), l)
		logged[base+"/"+f[0]+"/state b-"+f[1]] = true
	}
	require.ElementsMatch(t, []string{"S-00001", "S-00002", "S-00003"}, slices.Collect(maps.Keys(lastSeq)))
	for range res.Sent {
		select {
		case g := <-recv:
			require.True(t, logged[g.topic+" "+g.firmware], "received %s %s, not in the send log", g.topic, g.firmware)
		case <-time.After(5 * time.Second):
			t.Fatal("the subscriber did not get every message")
		}
	}
}

func TestBenchRefusesUnknownPayload(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 1, Main(t.Context(), []string{"bench", "--broker", mosquittoAddr, "--payload", "video"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), `--payload "video"`)
}
