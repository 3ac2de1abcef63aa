package lockersim

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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

func TestPayloadIsTelemetryOfAboutSize(t *testing.T) {
	for _, size := range []int{0, 100, 200, 1000, 5000} {
		g := newPayloadGen(size)
		for i := range 3 {
			p := g.next()
			var m struct {
				Boot uint32             `json:"boot"`
				Seq  uint64             `json:"seq"`
				TS   int64              `json:"ts"`
				M    map[string]float64 `json:"m"`
			}
			require.NoError(t, json.Unmarshal(p, &m), string(p))
			require.EqualValues(t, i+1, m.Seq)
			require.NotZero(t, m.TS)
			require.Len(t, m.M, 5)
			if size > 150 {
				require.InDelta(t, size, len(p), 1, "size %d", size)
			}
		}
	}
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
