package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/pg"
)

// Several hub nodes on one PostgreSQL (docs/scaling.md). Each node holds the
// MQTT connections of the lockers that reached it (behind a TCP load
// balancer) and keeps in memory what a single hub keeps; PostgreSQL stays the
// truth and LISTEN/NOTIFY on ClusterChannel tells the other nodes what
// changed:
//
//   - commands: a command is stored before it is sent; the node that holds
//     the locker's connection sends and drives it (answer, door, expiry).
//     The node that created it for a locker connected elsewhere announces it
//     (open), keeps it as a remote entry (its ?wait and reads follow the
//     database) and hears of its final state (done). A node adopts the open
//     commands of a locker when the locker subscribes to rpc/req there, when
//     told, and in a periodic sweep (a NOTIFY is lost while a listener is
//     down); the sweep also settles commands whose driver died;
//   - twins: every twin commit names its lockers; the other nodes read those
//     twins again (newer versions only). In cluster mode a twin commit reads
//     and locks the stored twins it changes first, so two nodes writing one
//     twin (a desired change on one, the locker's state on the other) do not
//     lose each other's change;
//   - presence: every presence flush names the lockers that came and went;
//     fleet_lockers.connected_node and fleet_nodes (a heartbeat with each
//     node's start as its generation) let a node that starts or lost its
//     listener read it again, and drop the lockers of a node that stopped;
//   - the registry: created, changed and deleted lockers and revoked
//     certificates are read again (a revoked locker is kicked wherever it is
//     connected).
//   - the latest telemetry sample: the app announces the lockers whose newer
//     sample this node stored (AnnounceTelemetry) and the others read those
//     (FollowTelemetry); telemetry is not a dependency of fleet.

// ClusterChannel is the NOTIFY channel of the hub nodes.
const ClusterChannel = "lockerhub_cluster"

// clusterMsg is one notification between nodes (JSON, at most maxPayload
// bytes: NOTIFY takes 8,000).
type clusterMsg struct {
	Node  string   `json:"n"`
	Open  []string `json:"o,omitempty"`   // lockers with new commands their creator could not send
	Done  []string `json:"d,omitempty"`   // commands stored in a final state
	Twins []string `json:"t,omitempty"`   // lockers whose twin changed
	On    []string `json:"on,omitempty"`  // lockers that connected to Node
	Off   []string `json:"off,omitempty"` // lockers that disconnected from Node
	Reg   []string `json:"r,omitempty"`   // lockers whose registry entry or certificates changed
	Tel   []string `json:"tm,omitempty"`  // lockers with a newer telemetry sample stored
}

const maxPayload = 7000

func (m clusterMsg) empty() bool {
	return len(m.Open)+len(m.Done)+len(m.Twins)+len(m.On)+len(m.Off)+len(m.Reg)+len(m.Tel) == 0
}

// payloads splits m into notifications of at most maxPayload bytes.
func (m clusterMsg) payloads() []string {
	var out []string
	cur := clusterMsg{Node: m.Node}
	size := 0
	flush := func() {
		if !cur.empty() {
			b, _ := json.Marshal(cur)
			out = append(out, string(b))
		}
		cur, size = clusterMsg{Node: m.Node}, 0
	}
	for _, f := range []struct {
		src []string
		dst func(*clusterMsg) *[]string
	}{
		{m.Open, func(c *clusterMsg) *[]string { return &c.Open }},
		{m.Done, func(c *clusterMsg) *[]string { return &c.Done }},
		{m.Twins, func(c *clusterMsg) *[]string { return &c.Twins }},
		{m.On, func(c *clusterMsg) *[]string { return &c.On }},
		{m.Off, func(c *clusterMsg) *[]string { return &c.Off }},
		{m.Reg, func(c *clusterMsg) *[]string { return &c.Reg }},
		{m.Tel, func(c *clusterMsg) *[]string { return &c.Tel }},
	} {
		for _, id := range f.src {
			if size+len(id)+4 > maxPayload-len(m.Node)-60 {
				flush()
			}
			d := f.dst(&cur)
			*d = append(*d, id)
			size += len(id) + 4
		}
	}
	flush()
	return out
}

func (m *clusterMsg) merge(o clusterMsg) {
	m.Open, m.Done, m.Twins = append(m.Open, o.Open...), append(m.Done, o.Done...), append(m.Twins, o.Twins...)
	m.On, m.Off, m.Reg = append(m.On, o.On...), append(m.Off, o.Off...), append(m.Reg, o.Reg...)
	m.Tel = append(m.Tel, o.Tel...)
}

// notifier queues notifications in a transaction's batch: they are delivered
// when it commits. A nil notifier (a single hub) queues nothing.
type notifier struct{ node string }

func (n *notifier) queue(b *pgx.Batch, m clusterMsg) {
	if n == nil || m.empty() {
		return
	}
	m.Node = n.node
	for _, p := range m.payloads() {
		b.Queue(`SELECT pg_notify($1, $2)`, ClusterChannel, p)
	}
}

// ClusterConfig tunes a node; zero values take the defaults noted.
type ClusterConfig struct {
	Node        string        // this node's name, unique among the nodes
	Sweep       time.Duration // heartbeat and command sweep period, 2 s
	NodeTimeout time.Duration // a node whose heartbeat is older is gone, 10 s
}

// Cluster connects this node's registry, overview, twins and commands to the
// other nodes'. Create it before Commands.Load, Start it before the broker
// accepts lockers, Run it until shutdown.
type Cluster struct {
	cfg      ClusterConfig
	pool     *pgxpool.Pool
	log      *slog.Logger
	reg      *Registry
	ov       *Overview
	twins    *Twins
	cmds     *Commands
	local    func(lockerID string) bool // connected to this node
	started  time.Time
	notifier *notifier
	m        *clusterMetrics

	mu      sync.Mutex
	out     clusterMsg // to announce outside a transaction
	adopt   map[string]bool
	done    map[string]bool
	follow  map[string]bool
	refresh map[string]bool
	tel     map[string]bool
	resync  bool
	wake    chan struct{}

	nodes map[string]time.Time // live nodes and their started_at (the worker's)

	// followTelemetry reads the latest samples of lockers another node
	// stored (nil: none); set by FollowTelemetry before Run.
	followTelemetry func(ctx context.Context, lockerIDs []string) error
}

// AnnounceTelemetry tells the other nodes that a newer telemetry sample of
// these lockers is stored (the telemetry ingest's OnStored; it does not
// block).
func (c *Cluster) AnnounceTelemetry(lockerIDs ...string) {
	c.announce(clusterMsg{Tel: lockerIDs})
}

// FollowTelemetry sets how this node reads the latest samples another node
// stored (nil ids: every locker's, after a lost listener). Call it before Run.
func (c *Cluster) FollowTelemetry(fn func(ctx context.Context, lockerIDs []string) error) {
	c.followTelemetry = fn
}

type clusterMetrics struct {
	notifications *prometheus.CounterVec
	adopted       prometheus.Counter
	settled       prometheus.Counter
	resyncs       prometheus.Counter
}

// NewCluster wires the components for running as one of several nodes.
// local reports whether a locker is connected to this node (the broker).
func NewCluster(pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer, cfg ClusterConfig,
	registry *Registry, ov *Overview, twins *Twins, cmds *Commands, local func(string) bool) *Cluster {
	if cfg.Sweep == 0 {
		cfg.Sweep = 2 * time.Second
	}
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = 10 * time.Second
	}
	c := &Cluster{cfg: cfg, pool: pool, log: log, reg: registry, ov: ov, twins: twins, cmds: cmds, local: local,
		notifier: &notifier{node: cfg.Node}, adopt: map[string]bool{}, done: map[string]bool{}, follow: map[string]bool{},
		refresh: map[string]bool{}, tel: map[string]bool{}, wake: make(chan struct{}, 1), nodes: map[string]time.Time{}}
	c.m = &clusterMetrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_fleet_cluster_notifications_total",
			Help: "Notifications between hub nodes (PostgreSQL NOTIFY), by direction: sent, received (from other nodes)."}, []string{"direction"}),
		adopted: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_fleet_cluster_commands_adopted_total",
			Help: "Open commands this node took over to send, for lockers connected to it (created on another node, or before a restart)."}),
		settled: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_fleet_cluster_commands_settled_total",
			Help: "Commands created on this node and finished by another one, whose final state this node read back."}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_fleet_cluster_resyncs_total",
			Help: "Full re-reads of presence, registry and twins after this node's listener (re)connected."}),
	}
	if reg != nil {
		reg.MustRegister(c.m.notifications, c.m.adopted, c.m.settled, c.m.resyncs)
	}
	registry.joinCluster(cfg.Node, func(ids []string) { c.announce(clusterMsg{Reg: ids}) })
	twins.notify = c.notifier
	cmds.joinCluster(c)
	return c
}

// Start records this node in fleet_nodes with a new generation.
func (c *Cluster) Start(ctx context.Context) error {
	c.started = time.Now().UTC().Truncate(time.Microsecond)
	c.reg.presence.node = c.cfg.Node
	_, err := c.pool.Exec(ctx, `INSERT INTO fleet_nodes (node, started_at, seen_at) VALUES ($1, $2, now())
		ON CONFLICT (node) DO UPDATE SET started_at = excluded.started_at, seen_at = excluded.seen_at`, c.cfg.Node, c.started)
	if err != nil {
		return fmt.Errorf("cluster: register node %s: %w", c.cfg.Node, err)
	}
	c.log.Info("cluster node registered", "node", c.cfg.Node)
	return nil
}

// Run listens to the other nodes and sweeps until ctx ends.
func (c *Cluster) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pg.Listen(ctx, c.pool, ClusterChannel, c.log, func(context.Context) {
			c.mu.Lock()
			c.resync = true
			c.mu.Unlock()
			c.poke()
		}, c.receive)
	}()
	tick := time.NewTicker(c.cfg.Sweep)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			// Gone at once for the others (the broker has closed: every
			// disconnect is flushed by the presence writer too).
			leave, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = c.pool.Exec(leave, `DELETE FROM fleet_nodes WHERE node = $1 AND started_at = $2`, c.cfg.Node, c.started)
			cancel()
			return
		case <-c.wake:
		case <-tick.C:
			c.heartbeat(ctx)
			c.cmds.clusterSweep(ctx)
		}
		c.work(ctx)
	}
}

func (c *Cluster) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// announce sends m outside any transaction (from the worker).
func (c *Cluster) announce(m clusterMsg) {
	if m.empty() {
		return
	}
	c.mu.Lock()
	c.out.merge(m)
	c.mu.Unlock()
	c.poke()
}

// wantAdopt asks the worker to look for open commands of a locker that is
// connected here.
func (c *Cluster) wantAdopt(lockerID string) {
	c.mu.Lock()
	c.adopt[lockerID] = true
	c.mu.Unlock()
	c.poke()
}

// receive takes a notification, on the listener's goroutine. Presence is
// applied at once and in order; the rest is read from the database by the
// worker.
func (c *Cluster) receive(payload string) {
	var m clusterMsg
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		c.log.Warn("cluster: bad notification", "error", err)
		return
	}
	if m.Node == c.cfg.Node {
		return
	}
	c.m.notifications.WithLabelValues("received").Inc()
	for _, id := range m.On {
		c.presence(id, m.Node, true)
	}
	for _, id := range m.Off {
		c.presence(id, m.Node, false)
	}
	c.mu.Lock()
	for _, id := range m.Open {
		if c.local(id) {
			c.adopt[id] = true
		}
	}
	for _, id := range m.Done {
		c.done[id] = true
	}
	for _, id := range m.Twins {
		c.follow[id] = true
	}
	for _, id := range m.Reg {
		c.refresh[id] = true
	}
	for _, id := range m.Tel {
		c.tel[id] = true
	}
	c.mu.Unlock()
	c.poke()
}

func (c *Cluster) presence(id, node string, on bool) {
	if c.reg.setRemote(id, node, on) {
		c.ov.SetOnline(id, c.reg.Online(id))
	}
}

// work does what was announced, received or asked for.
func (c *Cluster) work(ctx context.Context) {
	c.mu.Lock()
	out := c.out
	c.out = clusterMsg{}
	resync := c.resync
	c.resync = false
	take := func(m *map[string]bool) []string {
		ids := slices.Collect(maps.Keys(*m))
		*m = map[string]bool{}
		return ids
	}
	adopt, done, follow, refresh, tel := take(&c.adopt), take(&c.done), take(&c.follow), take(&c.refresh), take(&c.tel)
	c.mu.Unlock()

	if !out.empty() {
		b := &pgx.Batch{}
		c.notifier.queue(b, out)
		if err := c.pool.SendBatch(ctx, b).Close(); err != nil {
			c.log.Warn("cluster: notifying the other nodes failed (their sweep catches up)", "error", err)
		} else {
			c.m.notifications.WithLabelValues("sent").Add(float64(b.Len()))
		}
	}
	if resync {
		c.m.resyncs.Inc()
		c.heartbeat(ctx)
		if err := c.resyncPresence(ctx); err != nil {
			c.log.Warn("cluster: reading presence failed", "error", err)
		}
		refresh, follow = nil, nil
		if err := c.reg.Refresh(ctx, nil); err != nil {
			c.log.Warn("cluster: reading the registry failed", "error", err)
		}
		if err := c.twins.Follow(ctx, nil); err != nil {
			c.log.Warn("cluster: reading twins failed", "error", err)
		}
		if c.followTelemetry != nil {
			tel = nil
			if err := c.followTelemetry(ctx, nil); err != nil {
				c.log.Warn("cluster: reading the latest telemetry failed", "error", err)
			}
		}
		c.cmds.clusterSweep(ctx)
	}
	if len(refresh) > 0 {
		if err := c.reg.Refresh(ctx, refresh); err != nil {
			c.log.Warn("cluster: reading lockers failed", "lockers", len(refresh), "error", err)
		}
	}
	if len(follow) > 0 {
		if err := c.twins.Follow(ctx, follow); err != nil {
			c.log.Warn("cluster: reading twins failed", "lockers", len(follow), "error", err)
		}
	}
	if len(tel) > 0 && c.followTelemetry != nil {
		if err := c.followTelemetry(ctx, tel); err != nil {
			c.log.Warn("cluster: reading the latest telemetry failed", "lockers", len(tel), "error", err)
		}
	}
	if len(done) > 0 {
		c.cmds.settleRemote(ctx, done)
	}
	if len(adopt) > 0 {
		c.cmds.adopt(ctx, adopt)
	}
}

// heartbeat keeps this node's row fresh and drops the remote presence of the
// nodes that are gone or restarted (their lockers reconnect somewhere and are
// announced again).
func (c *Cluster) heartbeat(ctx context.Context) {
	if _, err := c.pool.Exec(ctx, `UPDATE fleet_nodes SET seen_at = now() WHERE node = $1`, c.cfg.Node); err != nil {
		c.log.Warn("cluster: heartbeat failed", "error", err)
		return
	}
	rows, err := c.pool.Query(ctx, `SELECT node, started_at FROM fleet_nodes WHERE seen_at > now() - $1::interval AND node <> $2`,
		c.cfg.NodeTimeout.String(), c.cfg.Node)
	if err != nil {
		c.log.Warn("cluster: reading the nodes failed", "error", err)
		return
	}
	live := map[string]time.Time{}
	var node string
	var started time.Time
	if _, err := pgx.ForEachRow(rows, []any{&node, &started}, func() error { live[node] = started; return nil }); err != nil {
		c.log.Warn("cluster: reading the nodes failed", "error", err)
		return
	}
	for n, s := range c.nodes {
		if ls, ok := live[n]; !ok || !ls.Equal(s) {
			ids := c.reg.dropRemoteNode(n)
			for _, id := range ids {
				c.ov.SetOnline(id, c.reg.Online(id))
			}
			c.log.Info("cluster: node gone or restarted", "node", n, "lockers", len(ids))
		}
	}
	c.nodes = live
}

// resyncPresence reads which lockers the other live nodes hold.
func (c *Cluster) resyncPresence(ctx context.Context) error {
	rows, err := c.pool.Query(ctx, `SELECT l.id, l.connected_node FROM fleet_lockers l JOIN fleet_nodes n ON n.node = l.connected_node
		WHERE l.connected_node <> $1 AND n.seen_at > now() - $2::interval AND l.connected_at >= n.started_at
			AND l.connected_at > COALESCE(l.disconnected_at, '-infinity')`, c.cfg.Node, c.cfg.NodeTimeout.String())
	if err != nil {
		return err
	}
	held := map[string]string{}
	var id, node string
	if _, err := pgx.ForEachRow(rows, []any{&id, &node}, func() error { held[id] = node; return nil }); err != nil {
		return err
	}
	for _, id := range c.reg.resetRemote(held) {
		c.ov.SetOnline(id, c.reg.Online(id))
	}
	return nil
}

// joinCluster makes the registry record its node with each connection and
// announce its changes.
func (r *Registry) joinCluster(node string, announce func([]string)) {
	r.mu.Lock()
	r.announce = announce
	r.mu.Unlock()
	r.presence.node = node
}

// setRemote records that a locker connected to, or disconnected from, another
// node; it reports whether Online changed.
func (r *Registry) setRemote(id, node string, on bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.lockers[id]
	if e == nil {
		return false
	}
	was := e.online || e.remote != ""
	switch {
	case on:
		e.remote = node
	case e.remote == node:
		e.remote = ""
	}
	return was != (e.online || e.remote != "")
}

// heldElsewhere reports whether another node holds the locker's connection.
func (r *Registry) heldElsewhere(id string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.lockers[id]
	return e != nil && !e.online && e.remote != ""
}

// dropRemoteNode forgets every locker a node that is gone held; it returns them.
func (r *Registry) dropRemoteNode(node string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, e := range r.lockers {
		if e.remote == node {
			e.remote = ""
			ids = append(ids, id)
		}
	}
	return ids
}

// resetRemote replaces what other nodes hold (locker → node) and returns the
// lockers whose Online changed.
func (r *Registry) resetRemote(held map[string]string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, e := range r.lockers {
		was := e.online || e.remote != ""
		e.remote = held[id]
		if e.online {
			e.remote = ""
		}
		if was != (e.online || e.remote != "") {
			ids = append(ids, id)
		}
	}
	return ids
}

// Refresh reads lockers another node changed (nil: every locker) and their
// revoked certificates again, tells the observers (the overview) and closes
// the connection of a locker here that was disabled, deleted or revoked.
// Every locker is compared when ids is nil, but only the created, deleted and
// enabled/disabled ones are told (a re-read after a lost listener).
func (r *Registry) Refresh(ctx context.Context, ids []string) error {
	var filter any
	if ids != nil {
		filter = ids
	}
	rows, err := r.pool.Query(ctx, `SELECT id, enabled FROM fleet_lockers WHERE $1::text[] IS NULL OR id = ANY($1)`, filter)
	if err != nil {
		return fmt.Errorf("refresh lockers: %w", err)
	}
	found := map[string]bool{}
	var id string
	var enabled bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &enabled}, func() error { found[id] = enabled; return nil }); err != nil {
		return fmt.Errorf("refresh lockers: %w", err)
	}
	rows, err = r.pool.Query(ctx, `SELECT locker_id, serial FROM fleet_certificates
		WHERE revoked_at IS NOT NULL AND ($1::text[] IS NULL OR locker_id = ANY($1))`, filter)
	if err != nil {
		return fmt.Errorf("refresh revocations: %w", err)
	}
	var serial string
	revoked := map[string][]string{}
	if _, err := pgx.ForEachRow(rows, []any{&id, &serial}, func() error { revoked[id] = append(revoked[id], serial); return nil }); err != nil {
		return fmt.Errorf("refresh revocations: %w", err)
	}
	told := map[string]bool{}
	var deleted, kick []string
	r.mu.Lock()
	if ids == nil {
		for id := range r.lockers {
			if _, ok := found[id]; !ok {
				ids = append(ids, id)
			}
		}
		for id, en := range found {
			if e := r.lockers[id]; e == nil || e.enabled != en {
				ids = append(ids, id)
			}
		}
		for id, serials := range revoked {
			for _, s := range serials {
				if _, ok := r.revoked[s]; !ok {
					ids = append(ids, id)
					break
				}
			}
		}
	}
	for _, id := range ids {
		if told[id] {
			continue
		}
		told[id] = true
		e := r.lockers[id]
		en, ok := found[id]
		switch {
		case !ok && e != nil:
			delete(r.lockers, id)
			deleted = append(deleted, id)
			if e.online {
				kick = append(kick, id)
			}
			continue
		case !ok:
			continue
		case e == nil:
			e = &entry{}
			r.lockers[id] = e
		}
		if e.enabled && !en && e.online {
			kick = append(kick, id)
		}
		e.enabled = en
	}
	for id, serials := range revoked {
		for _, s := range serials {
			if _, ok := r.revoked[s]; !ok {
				r.revoked[s] = struct{}{}
				if e := r.lockers[id]; e != nil && e.online {
					kick = append(kick, id)
				}
			}
		}
	}
	conns := r.conns
	r.mu.Unlock()
	if conns != nil {
		for _, id := range kick {
			conns.Kick(id)
		}
	}
	for _, id := range deleted {
		r.tell(Change{Entity: EntityLocker, ID: id, Action: ActionDelete})
	}
	for id := range told {
		if _, ok := found[id]; !ok {
			continue
		}
		l, err := r.Get(ctx, id)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return err
		}
		r.tell(Change{Entity: EntityLocker, ID: id, Action: ActionUpdate, After: l})
	}
	return nil
}

const twinColumns = `locker_id, version, reported, desired, desired_version`

func scanTwin(id *string, version, dv *int64, reported, desired *[]byte) (*Twin, error) {
	tw := &Twin{LockerID: *id, Version: *version, DesiredVersion: *dv, Desired: append(json.RawMessage(nil), *desired...)}
	if err := json.Unmarshal(*reported, &tw.Reported); err != nil {
		return nil, fmt.Errorf("twin of %s: %w", *id, err)
	}
	return tw, nil
}

// queueLockTwins reads and locks (FOR UPDATE, in locker order) the stored
// twins of a batch's lockers into stored.
func queueLockTwins(b *pgx.Batch, batch []item, stored map[string]*Twin) {
	seen := map[string]bool{}
	var ids []string
	for _, it := range batch {
		id := it.in.LockerID
		if it.desired != nil {
			id = it.desired.lockerID
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	b.Queue(`SELECT `+twinColumns+` FROM fleet_twins WHERE locker_id = ANY($1) ORDER BY locker_id FOR UPDATE`, ids).Query(func(rows pgx.Rows) error {
		var id string
		var version, dv int64
		var reported, desired []byte
		_, err := pgx.ForEachRow(rows, []any{&id, &version, &reported, &desired, &dv}, func() error {
			tw, err := scanTwin(&id, &version, &dv, &reported, &desired)
			if err == nil {
				stored[id] = tw
			}
			return err
		})
		return err
	})
}

// Follow reads twins another node changed (nil: every twin) and takes the
// ones newer than memory; the followers hear of each.
func (t *Twins) Follow(ctx context.Context, ids []string) error {
	var filter any
	if ids != nil {
		filter = ids
	}
	rows, err := t.pool.Query(ctx, `SELECT `+twinColumns+` FROM fleet_twins WHERE $1::text[] IS NULL OR locker_id = ANY($1)`, filter)
	if err != nil {
		return fmt.Errorf("follow twins: %w", err)
	}
	var newer []*Twin
	var id string
	var version, dv int64
	var reported, desired []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &version, &reported, &desired, &dv}, func() error {
		if old := t.Get(id); old != nil && old.Version >= version {
			return nil
		}
		tw, err := scanTwin(&id, &version, &dv, &reported, &desired)
		if err == nil {
			newer = append(newer, tw)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("follow twins: %w", err)
	}
	var taken []*Twin
	t.mu.Lock()
	for _, tw := range newer {
		if old := t.twins[tw.LockerID]; old == nil || old.Version < tw.Version {
			t.twins[tw.LockerID] = tw
			taken = append(taken, tw)
		}
	}
	t.mu.Unlock()
	for _, tw := range taken {
		for _, o := range t.followers {
			o(tw, TwinChange{})
		}
	}
	return nil
}
