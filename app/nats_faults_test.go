//go:build faults

package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/protocol"
)

const natsServer = "/usr/sbin/nats-server"

// natsNode is one nats-server process of the test cluster.
type natsNode struct {
	name, client, cluster, mqtt, dir string
}

// natsConfig writes a node's configuration: JetStream, a route to every
// other node, an MQTT listener with TLS whose client certificate is mapped
// to a user (verify_and_map), a locker user allowed only its own subjects,
// and a user for the hub.
func natsConfig(t *testing.T, n natsNode, all []natsNode, certDir, caFile string, lockers []string) string {
	t.Helper()
	var routes []string
	for _, o := range all {
		if o.name != n.name {
			routes = append(routes, fmt.Sprintf("%q", "nats-route://"+o.cluster))
		}
	}
	var users []string
	for _, id := range lockers {
		// The user is the certificate's subject as nats-server renders it.
		subj := fmt.Sprintf("CN=%s,O=lockerhub lockers", id)
		users = append(users, fmt.Sprintf(`{ user: %q, permissions: { publish: { allow: [%q] }, subscribe: { allow: [%q, "$MQTT.sub.>"] } } }`,
			subj, "lockers."+id+".>", "lockers."+id+".>"))
	}
	users = append(users, `{ user: "hub", password: "hub-secret" }`)
	conf := fmt.Sprintf(`server_name: %s
listen: %q
jetstream { store_dir: %q, max_memory_store: 64MB, max_file_store: 256MB }
cluster { name: lockerhub, listen: %q, routes: [%s] }
mqtt {
  listen: %q
  tls { cert_file: %q, key_file: %q, ca_file: %q, verify_and_map: true, timeout: 5 }
}
authorization { users: [
  %s
] }
`, n.name, n.client, filepath.Join(n.dir, "js"), n.cluster, strings.Join(routes, ", "), n.mqtt,
		filepath.Join(certDir, "server.crt"), filepath.Join(certDir, "server.key"), caFile, strings.Join(users, ",\n  "))
	path := filepath.Join(n.dir, "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	return path
}

// TestNATSFaultClusterCarriesALocker is the NATS mode's groundwork (DESIGN
// decision 30, docs/scaling.md): a 3-node nats-server cluster on loopback
// (JetStream R3, an MQTT listener per node with TLS client-certificate
// mapping to per-locker permissions). A lockersim locker (MQTT 3.1.1,
// certificate from the hub's CA) connects to node 1; its QoS 1 telemetry is
// consumed through node 3 by a durable JetStream pull consumer, also across
// a reconnect of the consumer (nothing lost meanwhile); a cell.open published
// as a NATS message on node 3 reaches the locker, which answers on
// rpc/res and reports the door opened with the command as its cause; the
// locker cannot publish under another locker's topics; removing its user and
// reloading the nodes disconnects it for good (revocation in this mode).
func TestNATSFaultClusterCarriesALocker(t *testing.T) {
	if _, err := os.Stat(natsServer); err != nil {
		t.Skipf("%s: %v (Debian's nats-server)", natsServer, err)
	}
	h := hubtest.Start(t) // the CA and the enrolment API
	certDir := t.TempDir()
	_, err := h.App.CA.LoadOrCreateServerCert(certDir, []string{"127.0.0.1", "localhost"})
	require.NoError(t, err)

	const locker = "NL-00001"
	nodes := make([]natsNode, 3)
	for i := range nodes {
		nodes[i] = natsNode{name: fmt.Sprintf("n%d", i+1), client: freePort(t), cluster: freePort(t), mqtt: freePort(t), dir: t.TempDir()}
	}
	var procs []*exec.Cmd
	for _, n := range nodes {
		conf := natsConfig(t, n, nodes, certDir, h.CAFile(), []string{locker})
		logPath := filepath.Join(n.dir, "nats.log")
		logf, err := os.Create(logPath)
		require.NoError(t, err)
		cmd := exec.Command(natsServer, "-c", conf)
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		procs = append(procs, cmd)
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("%s log (end):\n%s", n.name, tail(b, 3000))
			}
		})
	}

	// The hub's side: a NATS client of node 3, JetStream ready (meta leader).
	connect := func() (*nats.Conn, nats.JetStreamContext) {
		var nc *nats.Conn
		hubtest.Eventually(t, 30*time.Second, "NATS node 3 accepts the hub", func() bool {
			var err error
			nc, err = nats.Connect("nats://"+nodes[2].client, nats.UserInfo("hub", "hub-secret"), nats.Timeout(2*time.Second))
			return err == nil
		})
		js, err := nc.JetStream(nats.MaxWait(5 * time.Second))
		require.NoError(t, err)
		return nc, js
	}
	nc, js := connect()
	hubtest.Eventually(t, 60*time.Second, "the stream LOCKERS exists (R3)", func() bool {
		_, err := js.AddStream(&nats.StreamConfig{Name: "LOCKERS", Subjects: []string{"lockers.*.telemetry", "lockers.*.state", "lockers.*.events"},
			Storage: nats.FileStorage, Replicas: 3})
		return err == nil
	})
	_, err = js.AddConsumer("LOCKERS", &nats.ConsumerConfig{Durable: "hub", AckPolicy: nats.AckExplicitPolicy, AckWait: 10 * time.Second})
	require.NoError(t, err)

	// The locker: lockersim, enrolled at the hub, MQTT 3.1.1 to node 1.
	simDir := t.TempDir()
	simLog := filepath.Join(simDir, "lockersim.log")
	logf, err := os.Create(simLog)
	require.NoError(t, err)
	simBin := buildCmd(t, t.TempDir(), "lockersim")
	control := freePort(t)
	sim := exec.Command(simBin, "run", "--hub", nodes[0].mqtt, "--api", h.DeviceURL, "--admin", h.HTTPURL, "--admin-token", h.AdminToken,
		"--ca", h.CAFile(), "--var", simDir, "--data", simDir, "--mqtt", "4", "--lockers", "1", "--cells", "4", "--prefix", "NL-",
		"--telemetry", "300ms", "--control", control, "--door-close", "0", "--status-every", "0", "--ramp", "0s")
	sim.Stdout, sim.Stderr = logf, logf
	require.NoError(t, sim.Start())
	t.Cleanup(func() {
		_ = sim.Process.Signal(syscall.SIGTERM)
		_ = sim.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(simLog)
			t.Logf("lockersim log (end):\n%s", tail(b, 3000))
		}
	})

	sub, err := js.PullSubscribe("", "hub", nats.Bind("LOCKERS", "hub"))
	require.NoError(t, err)
	type seen struct{ telemetry, state, events int }
	lastTelemetry := map[[2]uint64]bool{}
	var doorEvent *protocol.Event
	take := func(s nats.JetStreamContext, sub *nats.Subscription, within time.Duration, got *seen) {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			msgs, err := sub.Fetch(50, nats.MaxWait(500*time.Millisecond))
			if err != nil && err != nats.ErrTimeout {
				require.NoError(t, err)
			}
			for _, m := range msgs {
				var hdr protocol.Header
				require.NoError(t, json.Unmarshal(m.Data, &hdr), "%s: %s", m.Subject, m.Data)
				switch m.Subject {
				case "lockers." + locker + ".telemetry":
					got.telemetry++
					lastTelemetry[[2]uint64{uint64(hdr.Boot), hdr.Seq}] = true
				case "lockers." + locker + ".state":
					got.state++
				case "lockers." + locker + ".events":
					got.events++
					var ev protocol.Event
					require.NoError(t, json.Unmarshal(m.Data, &ev))
					if ev.Type == protocol.EventDoorOpened {
						doorEvent = &ev
					}
				}
				require.NoError(t, m.Ack()) // after the hub's commit, in the real thing
			}
		}
	}
	var got seen
	take(js, sub, 5*time.Second, &got)
	require.GreaterOrEqual(t, got.telemetry, 5, "telemetry published on node 1, consumed via node 3")
	require.GreaterOrEqual(t, got.state, 1, "the full state after connecting")
	t.Logf("consumed via node 3 in 5 s: %d telemetry, %d state messages", got.telemetry, got.state)

	// The consumer goes away for 3 s; what the locker published meanwhile
	// waits in the stream and comes once it is back.
	nc.Close()
	time.Sleep(3 * time.Second)
	nc, js = connect()
	defer nc.Close()
	sub, err = js.PullSubscribe("", "hub", nats.Bind("LOCKERS", "hub"))
	require.NoError(t, err)
	var after seen
	take(js, sub, 2*time.Second, &after)
	require.GreaterOrEqual(t, after.telemetry, 8, "the samples of the 3 s away were kept for the durable consumer")
	t.Logf("after the consumer's 3 s away: %d telemetry samples delivered", after.telemetry)

	// A command published on node 3 reaches the locker on node 1.
	res, err := nc.SubscribeSync("lockers." + locker + ".rpc.res")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	req, _ := json.Marshal(protocol.Request{ID: "c-nats-1", Method: protocol.MethodCellOpen, Params: json.RawMessage(`{"cell":"A01"}`),
		Key: "c-nats-1", NotAfter: time.Now().Add(30 * time.Second).UnixMilli()})
	require.NoError(t, nc.Publish("lockers."+locker+".rpc.req", req))
	m, err := res.NextMsg(10 * time.Second)
	require.NoError(t, err, "the locker's answer on rpc/res")
	var answer protocol.Response
	require.NoError(t, json.Unmarshal(m.Data, &answer))
	require.Equal(t, "c-nats-1", answer.ID)
	require.Nil(t, answer.Error, "%s", m.Data)
	var final seen
	deadline := time.Now().Add(10 * time.Second)
	for doorEvent == nil && time.Now().Before(deadline) {
		take(js, sub, time.Second, &final)
	}
	require.NotNil(t, doorEvent, "the door event came through the stream")
	require.Equal(t, "command:c-nats-1", doorEvent.Cause)
	type lockerView struct {
		Connected bool `json:"connected"`
		Cells     map[string]struct {
			Door string `json:"door"`
		} `json:"cells"`
	}
	lockerState := func() lockerView {
		r, err := http.Get("http://" + control + "/lockers/" + locker)
		require.NoError(t, err)
		defer r.Body.Close()
		var view lockerView
		require.NoError(t, json.NewDecoder(r.Body).Decode(&view))
		return view
	}
	require.Equal(t, "open", lockerState().Cells["A01"].Door, "the locker opened the cell")

	// Per-locker permissions: with the locker's certificate, a publish under
	// its own topics reaches NATS subscribers; one under another locker's
	// does not.
	mine, err := nc.SubscribeSync("lockers." + locker + ".probe")
	require.NoError(t, err)
	other, err := nc.SubscribeSync("lockers.NL-99999.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	pub := func(topic string) string {
		out, _ := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strings.Split(nodes[1].mqtt, ":")[1], "-V", "mqttv311", "-q", "1",
			"--cafile", h.CAFile(), "--cert", filepath.Join(simDir, locker+".crt"), "--key", filepath.Join(simDir, locker+".key"),
			"-i", locker+"-probe", "-t", topic, "-m", `{"probe":true}`).CombinedOutput()
		return string(out)
	}
	out := pub("lockers/" + locker + "/probe")
	_, err = mine.NextMsg(5 * time.Second)
	require.NoError(t, err, "its own topic, through node 2: %s", out)
	out = pub("lockers/NL-99999/telemetry")
	_, err = other.NextMsg(time.Second)
	require.ErrorIs(t, err, nats.ErrTimeout, "another locker's topic must be refused: %s", out)
	t.Logf("publish under another locker's topic: refused (mosquitto_pub: %q)", strings.TrimSpace(out))

	// Revocation in this mode: the locker's user leaves the configuration
	// and every node reloads it; the connection is closed and the locker
	// cannot come back.
	require.True(t, lockerState().Connected)
	for i, n := range nodes {
		natsConfig(t, n, nodes, certDir, h.CAFile(), nil)
		require.NoError(t, procs[i].Process.Signal(syscall.SIGHUP))
	}
	hubtest.Eventually(t, 10*time.Second, "the locker is disconnected after the reload", func() bool { return !lockerState().Connected })
	require.Never(t, func() bool { return lockerState().Connected }, 3*time.Second, 100*time.Millisecond, "its certificate maps to no user any more")
}
