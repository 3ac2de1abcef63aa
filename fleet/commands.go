package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// Commands are the hub's requests to lockers (cell.open, cell.status,
// locker.reboot, power.cycle, display.message) with exactly-once effect
// (DESIGN decisions 13 and 16):
//
//   - a command is stored before it is sent; an API caller's idempotency key
//     maps to one command (a repeat returns it, a repeat with other
//     parameters is ErrIdempotencyConflict);
//   - it is sent (QoS 0, key = command id, not_after) when created, when the
//     locker subscribes to rpc/req again (after its reconnect or a hub
//     restart) and every ResendAfter until the locker answers, but never once
//     not_after has passed; the locker deduplicates by key;
//   - states: pending (not sent yet) → sent (published, not answered, or
//     answered and waiting for the door) → succeeded | failed (refused by the
//     locker) | expired (never executed: not sent in time, or refused as
//     expired) | unconfirmed (sent, but neither an answer before not_after nor,
//     for cell.open, the door sensor in time: the locker may have acted);
//   - cell.open succeeds only when the door sensor reports the door open: an
//     event door_opened with cause "command:<id>" (stored, then observed);
//     after a successful answer the door has ConfirmWithin, then the command
//     is unconfirmed; while device messages cannot be stored (PostgreSQL
//     away), the window is counted only from when they can again.
//
// Open commands live in memory and in PostgreSQL; one writer goroutine stores
// every change in group commits (many commands per transaction).

// Devices is how commands reach lockers; broker.Broker implements it. Answers
// come back through Commands.Response.
type Devices interface {
	Request(lockerID string, req protocol.Request) error
	Online(lockerID string) bool
}

// Command states.
const (
	CommandPending     = "pending"
	CommandSent        = "sent"
	CommandSucceeded   = "succeeded"
	CommandFailed      = "failed"
	CommandExpired     = "expired"
	CommandUnconfirmed = "unconfirmed"
)

// CommandStates lists every state, in lifecycle order.
var CommandStates = []string{CommandPending, CommandSent, CommandSucceeded, CommandFailed, CommandExpired, CommandUnconfirmed}

// CommandFinal reports whether a state is final.
func CommandFinal(state string) bool { return state != CommandPending && state != CommandSent }

// Errors of commands.
var (
	ErrUnknownCell         = errors.New("unknown cell")
	ErrIdempotencyConflict = errors.New("idempotency key already used for another command")
	ErrTooManyCommands     = errors.New("too many open commands")
	ErrNotStored           = errors.New("the command was not stored")
)

// CommandMethods are the methods a command may call, with the default and
// the longest validity (not_after - now) of each.
var CommandMethods = map[string]struct{ Default, Max time.Duration }{
	protocol.MethodCellOpen:       {30 * time.Second, 15 * time.Minute},
	protocol.MethodCellStatus:     {30 * time.Second, 15 * time.Minute},
	protocol.MethodLockerReboot:   {5 * time.Minute, 24 * time.Hour},
	protocol.MethodPowerCycle:     {5 * time.Minute, 24 * time.Hour},
	protocol.MethodDisplayMessage: {5 * time.Minute, 24 * time.Hour},
	protocol.MethodPOSCharge:      {time.Minute, 5 * time.Minute},
}

// HubOnlyMethods are commands only the hub's own components create (the
// payments of parcels); the commands API refuses them.
var HubOnlyMethods = map[string]bool{protocol.MethodPOSCharge: true}

// MinValidity is the shortest validity a command may ask for.
const MinValidity = time.Second

// MaxDisplayText bounds display.message's text.
const MaxDisplayText = 500

// Command is one command to a locker.
type Command struct {
	ID             string          `json:"id"`
	LockerID       string          `json:"locker_id"`
	Method         string          `json:"method"`
	Params         json.RawMessage `json:"params"`
	State          string          `json:"state"`
	CreatedBy      string          `json:"created_by"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	NotAfter       time.Time       `json:"not_after"`
	CreatedAt      time.Time       `json:"created_at"`
	SentAt         *time.Time      `json:"sent_at,omitempty"`
	Attempts       int             `json:"attempts"`
	AnsweredAt     *time.Time      `json:"answered_at,omitempty"`
	ConfirmedAt    *time.Time      `json:"confirmed_at,omitempty"` // cell.open: the door sensor reported the door open
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          *CommandError   `json:"error,omitempty"`

	caller    string
	confirmMs int
}

// CommandError says why a command failed, expired or is unconfirmed: the
// locker's error code (protocol.ErrCode*) or the hub's (not_sent, no_answer,
// door_not_opened).
type CommandError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Hub-side error codes of commands.
const (
	CmdErrNotSent       = "not_sent"        // expired before the locker was reachable
	CmdErrNoAnswer      = "no_answer"       // sent, no answer before not_after
	CmdErrDoorNotOpened = "door_not_opened" // cell.open answered, but no door sensor confirmation in time
)

// NewCommand is a request for a command.
type NewCommand struct {
	LockerID       string
	Method         string
	Params         json.RawMessage
	IdempotencyKey string
	NotAfter       time.Time     // zero: now + ValidFor
	ValidFor       time.Duration // zero: the method's default
	Caller         string        // the idempotency scope, e.g. "user:7", "client:3"
	CreatedBy      string        // a readable name of the caller
}

// CommandsConfig tunes commands; zero values take the defaults noted.
type CommandsConfig struct {
	ConfirmWithin time.Duration // cell.open: door confirmation after the answer, 10 s
	ResendAfter   time.Duration // unanswered commands are sent again after, 3 s
	Sweep         time.Duration // expiry and resend check period, 250 ms
	MaxOpen       int           // open commands at once, 100,000
	BatchMax      int           // changes per transaction, 1,000
}

func (c *CommandsConfig) defaults() {
	if c.ConfirmWithin == 0 {
		c.ConfirmWithin = 10 * time.Second
	}
	if c.ResendAfter == 0 {
		c.ResendAfter = 3 * time.Second
	}
	if c.Sweep == 0 {
		c.Sweep = 250 * time.Millisecond
	}
	if c.MaxOpen == 0 {
		c.MaxOpen = 100_000
	}
	if c.BatchMax == 0 {
		c.BatchMax = 1000
	}
}

type cmdEntry struct {
	cmd      Command
	done     chan struct{} // closed when the final state is stored
	stored   bool          // done is closed (guarded by Commands.mu)
	lastSent time.Time
	// remote: created here for a locker connected to another node, which
	// drives it (cluster mode); kept for ?wait until its final state is read
	// back, never in byLocker, never sent or swept here.
	remote bool
}

// write is one queued change: a new command (insert, with a waiting caller)
// or the latest snapshot of an existing one.
type write struct {
	insert *insertOp
	entry  *cmdEntry
}

type insertOp struct {
	cmd    Command
	actor  audit.Actor
	result chan insertResult
}

type insertResult struct {
	cmd     Command
	created bool
	err     error
}

// Commands keeps the commands.
type Commands struct {
	pool     *pgxpool.Pool
	devices  Devices
	registry *Registry
	overview *Overview // the registry in memory (cells, enabled); nil: the registry's database
	twins    *Twins    // the door's reported state; nil: events alone confirm
	cfg      CommandsConfig
	log      *slog.Logger
	m        *cmdMetrics

	mu       sync.Mutex
	entries  map[string]*cmdEntry            // open commands, and final ones until stored
	byLocker map[string]map[string]*cmdEntry // open commands by locker
	queue    []write                         // changes of existing commands
	sentNew  []*cmdEntry                     // sent since the last sweep: "sent" not queued yet
	sentOld  []*cmdEntry                     // sent before the last sweep: queued at the next
	inserts  []write                         // new commands: their own writer, so a new command never waits behind changes
	wake     chan struct{}
	wakeIns  chan struct{}

	cluster *Cluster  // cluster mode (nil: a single hub)
	notify  *notifier // cluster mode: final states announced in their transaction
	// finished: commands this node drove to a stored final state lately
	// (cluster mode), so an adoption that read them open just before is
	// not taken for a new command.
	finished map[string]time.Time
}

// forgetLocked drops a command stored in its final state from memory.
func (c *Commands) forgetLocked(e *cmdEntry) {
	delete(c.entries, e.cmd.ID)
	if c.cluster != nil {
		c.finished[e.cmd.ID] = time.Now()
	}
}

func (c *Commands) joinCluster(cl *Cluster) {
	c.cluster, c.notify, c.finished = cl, cl.notifier, map[string]time.Time{}
}

// NewCommands builds the command keeper; Load it, then Run it. overview and
// twins may be nil.
func NewCommands(pool *pgxpool.Pool, devices Devices, registry *Registry, overview *Overview, twins *Twins,
	log *slog.Logger, reg prometheus.Registerer, cfg CommandsConfig) *Commands {
	cfg.defaults()
	c := &Commands{pool: pool, devices: devices, registry: registry, overview: overview, twins: twins, cfg: cfg, log: log,
		entries: map[string]*cmdEntry{}, byLocker: map[string]map[string]*cmdEntry{}, wake: make(chan struct{}, 1), wakeIns: make(chan struct{}, 1)}
	c.m = newCmdMetrics(reg, func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(len(c.entries))
	})
	return c
}

const cmdColumns = `id, locker_id, method, params, state, caller, created_by, coalesce(idempotency_key, ''), not_after, confirm_ms,
	created_at, sent_at, attempts, answered_at, confirmed_at, finished_at, result, coalesce(error_code, ''), coalesce(error_message, '')`

func scanCommand(row pgx.Row) (Command, error) {
	var c Command
	var ec, em string
	var result []byte
	err := row.Scan(&c.ID, &c.LockerID, &c.Method, &c.Params, &c.State, &c.caller, &c.CreatedBy, &c.IdempotencyKey, &c.NotAfter,
		&c.confirmMs, &c.CreatedAt, &c.SentAt, &c.Attempts, &c.AnsweredAt, &c.ConfirmedAt, &c.FinishedAt, &result, &ec, &em)
	if len(result) > 0 {
		c.Result = result
	}
	if ec != "" {
		c.Error = &CommandError{Code: ec, Message: em}
	}
	c.utc()
	return c, err
}

func (c *Command) utc() {
	c.NotAfter, c.CreatedAt = c.NotAfter.UTC(), c.CreatedAt.UTC()
	for _, t := range []**time.Time{&c.SentAt, &c.AnsweredAt, &c.ConfirmedAt, &c.FinishedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
}

// Load reads the open commands (pending, sent) after a start. A sent cell.open
// whose door event was stored before the hub stopped is settled at once.
func (c *Commands) Load(ctx context.Context) error {
	if c.cluster != nil {
		// Several nodes: the node a locker connects to adopts its open
		// commands (Subscribed, the cluster sweep); loading them all here
		// would make every node drive them.
		c.log.Info("commands: cluster mode, open commands are adopted as their lockers connect")
		return nil
	}
	rows, err := c.pool.Query(ctx, `SELECT `+cmdColumns+` FROM fleet_commands WHERE state IN ('pending', 'sent')`)
	if err != nil {
		return fmt.Errorf("load commands: %w", err)
	}
	cmds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Command, error) { return scanCommand(r) })
	if err != nil {
		return fmt.Errorf("load commands: %w", err)
	}
	opened, err := c.openedDoors(ctx, cmds)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range cmds {
		e := &cmdEntry{cmd: cmd, done: make(chan struct{})}
		c.addLocked(e)
		if at, ok := opened[cmd.ID]; ok {
			at = at.UTC()
			e.cmd.ConfirmedAt = &at
			c.finishLocked(e, CommandSucceeded, nil, time.Now())
		}
	}
	c.log.Info("commands loaded", "open", len(cmds), "confirmed_while_stopped", len(opened))
	return nil
}

// openedDoors finds the sent cell.open commands whose door event is stored
// (taken before a restart, or by another node): command ID → when.
func (c *Commands) openedDoors(ctx context.Context, cmds []Command) (map[string]time.Time, error) {
	var causes []string
	for _, cmd := range cmds {
		if cmd.Method == protocol.MethodCellOpen && cmd.Attempts > 0 {
			causes = append(causes, "command:"+cmd.ID)
		}
	}
	opened := map[string]time.Time{}
	if len(causes) == 0 {
		return opened, nil
	}
	rows, err := c.pool.Query(ctx, `SELECT cause, min(received_at) FROM fleet_events
		WHERE type = 'door_opened' AND cause = ANY($1) GROUP BY cause`, causes)
	if err != nil {
		return nil, fmt.Errorf("load command confirmations: %w", err)
	}
	var cause string
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&cause, &at}, func() error {
		opened[strings.TrimPrefix(cause, "command:")] = at.UTC()
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load command confirmations: %w", err)
	}
	return opened, nil
}

func (c *Commands) addLocked(e *cmdEntry) {
	c.entries[e.cmd.ID] = e
	if c.byLocker[e.cmd.LockerID] == nil {
		c.byLocker[e.cmd.LockerID] = map[string]*cmdEntry{}
	}
	c.byLocker[e.cmd.LockerID][e.cmd.ID] = e
}

// validate checks a request and makes the command.
func (c *Commands) validate(ctx context.Context, nc NewCommand, now time.Time) (Command, error) {
	limits, ok := CommandMethods[nc.Method]
	if !ok {
		known := make([]string, 0, len(CommandMethods))
		for m := range CommandMethods {
			known = append(known, m)
		}
		slices.Sort(known)
		return Command{}, fmt.Errorf("%w: method %q is not a command (%s)", ErrInvalid, nc.Method, strings.Join(known, ", "))
	}
	if len(nc.IdempotencyKey) > 200 {
		return Command{}, fmt.Errorf("%w: idempotency_key is longer than 200 characters", ErrInvalid)
	}
	if nc.Caller == "" {
		nc.Caller = "system"
	}
	params := nc.Params
	if len(bytes.TrimSpace(params)) == 0 || string(bytes.TrimSpace(params)) == "null" {
		params = json.RawMessage(`{}`)
	}
	var err error
	if params, err = normalJSON(params); err != nil {
		return Command{}, fmt.Errorf("%w: params: %v", ErrInvalid, err)
	}
	switch nc.Method {
	case protocol.MethodCellOpen, protocol.MethodCellStatus:
		var p protocol.CellOpenParams
		if err := strictJSON(params, &p); err != nil || p.Cell == "" {
			return Command{}, fmt.Errorf(`%w: %s takes params {"cell":"A01"}`, ErrInvalid, nc.Method)
		}
	case protocol.MethodDisplayMessage:
		var p protocol.DisplayMessageParams
		if err := strictJSON(params, &p); err != nil || p.Text == "" || len(p.Text) > MaxDisplayText || p.TTLSeconds < 0 {
			return Command{}, fmt.Errorf(`%w: display.message takes params {"text":"…","ttl_s":N} with a text of 1–%d bytes`, ErrInvalid, MaxDisplayText)
		}
	case protocol.MethodPOSCharge:
		if _, err := protocol.DecodePOSChargeParams(params); err != nil {
			return Command{}, fmt.Errorf(`%w: pos.charge takes params {"payment","parcel","amount","currency"}: %v`, ErrInvalid, err)
		}
	default:
		if string(params) != "{}" {
			return Command{}, fmt.Errorf("%w: %s takes no params", ErrInvalid, nc.Method)
		}
	}
	notAfter := nc.NotAfter
	switch {
	case !notAfter.IsZero() && nc.ValidFor != 0:
		return Command{}, fmt.Errorf("%w: give not_after or valid_for, not both", ErrInvalid)
	case notAfter.IsZero() && nc.ValidFor != 0:
		notAfter = now.Add(nc.ValidFor)
	case notAfter.IsZero():
		notAfter = now.Add(limits.Default)
	}
	if d := notAfter.Sub(now); d < MinValidity || d > limits.Max {
		return Command{}, fmt.Errorf("%w: %s must be valid for %s to %s from now, not %s", ErrInvalid, nc.Method, MinValidity, limits.Max, d.Round(time.Millisecond))
	}
	// The overview has every registered locker in memory (no query on the
	// command's path); one it does not know yet is looked up.
	var enabled bool
	if row, ok := c.overviewRow(nc.LockerID); ok {
		enabled = row.Enabled
	} else {
		l, err := c.registry.Get(ctx, nc.LockerID)
		if err != nil {
			return Command{}, err
		}
		enabled = l.Enabled
	}
	if !enabled {
		return Command{}, fmt.Errorf("%w: %s", ErrDisabled, nc.LockerID)
	}
	if nc.Method == protocol.MethodCellOpen || nc.Method == protocol.MethodCellStatus {
		var p protocol.CellOpenParams
		_ = json.Unmarshal(params, &p)
		if c.overview != nil && !c.overview.HasCell(nc.LockerID, p.Cell) {
			return Command{}, fmt.Errorf("%w: locker %s has no cell %q", ErrUnknownCell, nc.LockerID, p.Cell)
		}
	}
	cmd := Command{ID: commandIDPrefix + strings.ToLower(rand.Text()[:20]), LockerID: nc.LockerID, Method: nc.Method, Params: params,
		State: CommandPending, CreatedBy: nc.CreatedBy, IdempotencyKey: nc.IdempotencyKey,
		NotAfter: notAfter.UTC().Truncate(time.Millisecond), CreatedAt: now.UTC().Truncate(time.Microsecond), caller: nc.Caller}
	if nc.Method == protocol.MethodCellOpen {
		cmd.confirmMs = int(c.cfg.ConfirmWithin.Milliseconds())
	}
	return cmd, nil
}

func (c *Commands) overviewRow(id string) (Row, bool) {
	if c.overview == nil {
		return Row{}, false
	}
	return c.overview.Row(id)
}

func strictJSON(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// normalJSON re-encodes a JSON object with sorted keys, so that two requests
// with the same parameters compare equal.
func normalJSON(raw json.RawMessage) (json.RawMessage, error) {
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errors.New("must be a JSON object")
	}
	return json.Marshal(v)
}

// Create stores a command and sends it when the locker is connected. With an
// idempotency key already used by the same caller it returns the first
// command (created false), or ErrIdempotencyConflict when that one has other
// parameters.
func (c *Commands) Create(ctx context.Context, nc NewCommand) (Command, bool, error) {
	now := time.Now()
	cmd, err := c.validate(ctx, nc, now)
	if err != nil {
		return Command{}, false, err
	}
	c.mu.Lock()
	if len(c.entries) >= c.cfg.MaxOpen {
		c.mu.Unlock()
		return Command{}, false, fmt.Errorf("%w: %d", ErrTooManyCommands, c.cfg.MaxOpen)
	}
	op := &insertOp{cmd: cmd, actor: audit.ActorFrom(ctx), result: make(chan insertResult, 1)}
	c.queueLocked(write{insert: op})
	c.mu.Unlock()
	select {
	case r := <-op.result:
		return r.cmd, r.created, r.err
	case <-ctx.Done():
		return Command{}, false, ctx.Err()
	}
}

func (c *Commands) queueLocked(w write) {
	q, wake := &c.queue, c.wake
	if w.insert != nil {
		q, wake = &c.inserts, c.wakeIns
	}
	*q = append(*q, w)
	select {
	case wake <- struct{}{}:
	default:
	}
}

// Subscribed is told which hub→device kinds a locker has subscribed to: its
// open commands go out then (after a reconnect or a hub restart).
func (c *Commands) Subscribed(lockerID string, kinds []protocol.Kind) {
	if !slices.Contains(kinds, protocol.KindRPCReq) {
		return
	}
	if c.cluster != nil {
		c.cluster.wantAdopt(lockerID) // created elsewhere or before a restart
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.byLocker[lockerID] {
		if e.cmd.AnsweredAt == nil {
			c.sendLocked(e, now)
		}
	}
}

// sendLocked publishes a command if it is still valid.
func (c *Commands) sendLocked(e *cmdEntry, now time.Time) {
	if CommandFinal(e.cmd.State) || !now.Before(e.cmd.NotAfter) {
		return // the sweep settles it
	}
	err := c.devices.Request(e.cmd.LockerID, protocol.Request{ID: e.cmd.ID, Method: e.cmd.Method, Params: e.cmd.Params,
		Key: e.cmd.ID, NotAfter: e.cmd.NotAfter.UnixMilli()})
	if err != nil {
		c.log.Debug("command not sent", "command", e.cmd.ID, "locker", e.cmd.LockerID, "error", err)
		return
	}
	c.m.sends.Inc()
	e.lastSent = now
	e.cmd.Attempts++
	if e.cmd.SentAt == nil {
		t := now.UTC()
		e.cmd.SentAt = &t
	}
	e.cmd.State = CommandSent
	// "sent" is stored a sweep or two later, so a command settled by then
	// (a cell.open is, in milliseconds) is written once, in its final state.
	c.sentNew = append(c.sentNew, e)
}

// flushSentLocked queues the "sent" writes held since the sweep before
// (all of them when all is true) for commands that are not final by now.
func (c *Commands) flushSentLocked(all bool) {
	held := c.sentOld
	if all {
		held = append(held, c.sentNew...)
		c.sentNew = nil
	}
	c.sentOld, c.sentNew = c.sentNew, nil
	for _, e := range held {
		if !CommandFinal(e.cmd.State) {
			c.queueLocked(write{entry: e})
		}
	}
}

// commandIDPrefix starts every command's ID, so answers to the hub's other
// requests are told apart.
const commandIDPrefix = "c-"

// Response takes a locker's answer to a command (broker OnResponse); it runs
// on the locker's read goroutine and does not block.
func (c *Commands) Response(lockerID string, res protocol.Response) {
	if !strings.HasPrefix(res.ID, commandIDPrefix) {
		return // another component's request (codes.key, parcels.sync): not ours to count
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[res.ID]
	if e == nil || e.remote || e.cmd.LockerID != lockerID || CommandFinal(e.cmd.State) || e.cmd.AnsweredAt != nil {
		c.m.answersIgnored.Inc()
		return // a repeated answer, or one to a command already settled
	}
	t := now.UTC()
	e.cmd.AnsweredAt = &t
	switch {
	case res.Error != nil && res.Error.Code == protocol.ErrCodeExpired:
		c.finishLocked(e, CommandExpired, &CommandError{Code: res.Error.Code, Message: res.Error.Message}, now)
	case res.Error != nil:
		c.finishLocked(e, CommandFailed, &CommandError{Code: res.Error.Code, Message: res.Error.Message}, now)
	default:
		e.cmd.Result = res.Result
		if e.cmd.Method == protocol.MethodCellOpen && e.cmd.ConfirmedAt == nil && !alreadyOpen(res.Result) && !c.doorOpenSinceSent(e) {
			// The door sensor has ConfirmWithin (sweep). Not stored yet: the
			// final state follows in milliseconds, and after a restart the
			// request is sent again and answered from the locker's key cache.
			return
		}
		c.finishLocked(e, CommandSucceeded, nil, now)
	}
}

// doorOpenSinceSent: the twin has the cell's door open when the locker
// answers: a request repeated after a reconnect or restart is answered from
// the locker's key cache, and the door event of the first execution may have
// been taken before; the sensor says the door is open either way.
func (c *Commands) doorOpenSinceSent(e *cmdEntry) bool {
	if c.twins == nil || e.cmd.SentAt == nil {
		return false
	}
	var p protocol.CellOpenParams
	if json.Unmarshal(e.cmd.Params, &p) != nil {
		return false
	}
	t := c.twins.Get(e.cmd.LockerID)
	if t == nil {
		return false
	}
	cs := t.Reported.Cells[p.Cell]
	return cs != nil && cs.Door == protocol.DoorOpen
}

// alreadyOpen: cell.open answered that the door was open before (the sensor
// says so; no event follows).
func alreadyOpen(result json.RawMessage) bool {
	var r struct {
		AlreadyOpen bool `json:"already_open"`
	}
	return json.Unmarshal(result, &r) == nil && r.AlreadyOpen
}

// Event takes a stored device event (Twins.ObserveEvents): a door opened with
// cause "command:<id>" confirms that cell.open. StoreConfirmations does the
// same inside the events' transaction, a commit sooner; Event is for a
// Commands without it.
func (c *Commands) Event(lockerID string, ev protocol.Event) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.confirmedLocked(lockerID, ev)
	if e == nil {
		return
	}
	t := now.UTC()
	e.cmd.ConfirmedAt = &t
	// The door opened for this command: it succeeded, even if its answer was lost.
	c.finishLocked(e, CommandSucceeded, nil, now)
}

// confirmedLocked returns the open command a stored event confirms, if any.
func (c *Commands) confirmedLocked(lockerID string, ev protocol.Event) *cmdEntry {
	id, ok := strings.CutPrefix(ev.Cause, "command:")
	if !ok || ev.Type != protocol.EventDoorOpened {
		return nil
	}
	e := c.entries[id]
	if e == nil || e.remote || e.cmd.LockerID != lockerID || CommandFinal(e.cmd.State) {
		return nil
	}
	return e
}

// StoreConfirmations is the twin writer's TxEventHook: the cell.open commands
// that new door events confirm are stored as succeeded in the events' own
// transaction, so the caller hears of success one commit after the door
// event instead of two. After the commit the commands settle in memory; a
// command that changed meanwhile (its answer came) is written again by the
// change writer.
func (c *Commands) StoreConfirmations(events []LockerEvent, b *pgx.Batch) func() {
	now := time.Now()
	t := now.UTC()
	var snaps []Command
	var ents []*cmdEntry
	c.mu.Lock()
	for _, le := range events {
		e := c.confirmedLocked(le.LockerID, le.Event)
		if e == nil || slices.Contains(ents, e) {
			continue
		}
		s := e.cmd
		s.State, s.Error, s.ConfirmedAt, s.FinishedAt = CommandSucceeded, nil, &t, &t
		snaps, ents = append(snaps, s), append(ents, e)
	}
	c.mu.Unlock()
	if len(snaps) == 0 {
		return nil
	}
	// Queued: its error is the batch's, and then the hook runs again.
	_ = updateCommands(context.Background(), pg.Queue{Batch: b}, snaps)
	c.notify.queue(b, clusterMsg{Done: finalIDs(snaps)})
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, e := range ents {
			s := snaps[i]
			// What the locker's answer or a resend changed after the
			// snapshot is not stored yet.
			changed := e.cmd.Attempts != s.Attempts || !sameTime(e.cmd.AnsweredAt, s.AnsweredAt) ||
				!sameTime(e.cmd.SentAt, s.SentAt) || !bytes.Equal(e.cmd.Result, s.Result)
			wasFinal := CommandFinal(e.cmd.State)
			// Stored as succeeded; a final state the sweep set meanwhile
			// was not stored over it (updateCommands keeps final states).
			e.cmd.State, e.cmd.Error, e.cmd.ConfirmedAt, e.cmd.FinishedAt = s.State, s.Error, s.ConfirmedAt, s.FinishedAt
			if !wasFinal {
				c.settledLocked(e, now)
			}
			if changed || wasFinal {
				c.queueLocked(write{entry: e})
				continue
			}
			if c.entries[e.cmd.ID] == e {
				c.forgetLocked(e)
			}
			if !e.stored {
				e.stored = true
				close(e.done)
			}
		}
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func (c *Commands) finishLocked(e *cmdEntry, state string, cerr *CommandError, now time.Time) {
	t := now.UTC()
	e.cmd.State, e.cmd.Error, e.cmd.FinishedAt = state, cerr, &t
	c.settledLocked(e, now)
	c.queueLocked(write{entry: e})
}

// settledLocked drops a command that reached its final state from the open
// ones and counts it; storing it is the caller's.
func (c *Commands) settledLocked(e *cmdEntry, now time.Time) {
	if m := c.byLocker[e.cmd.LockerID]; m != nil {
		delete(m, e.cmd.ID)
		if len(m) == 0 {
			delete(c.byLocker, e.cmd.LockerID)
		}
	}
	c.m.finished.WithLabelValues(e.cmd.Method, e.cmd.State).Inc()
	c.m.seconds.WithLabelValues(e.cmd.Method).Observe(now.Sub(e.cmd.CreatedAt).Seconds())
}

// sweep expires, resends and gives up on commands.
func (c *Commands) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushSentLocked(false)
	online := map[string]bool{}
	for locker, m := range c.byLocker {
		for _, e := range m {
			cmd := &e.cmd
			switch {
			case cmd.AnsweredAt != nil: // cell.open waiting for its door
				// The door event is stored before it confirms: while device
				// messages cannot be stored (PostgreSQL away) it may be
				// waiting, so the window counts only once they can again.
				window := time.Duration(cmd.confirmMs) * time.Millisecond
				if now.Sub(*cmd.AnsweredAt) > window && (c.twins == nil || c.twins.Stored(now, window)) {
					c.finishLocked(e, CommandUnconfirmed, &CommandError{Code: CmdErrDoorNotOpened,
						Message: fmt.Sprintf("the locker answered, but its door sensor did not report the door open within %s", time.Duration(cmd.confirmMs)*time.Millisecond)}, now)
				}
			case !now.Before(cmd.NotAfter) && cmd.Attempts == 0:
				c.finishLocked(e, CommandExpired, &CommandError{Code: CmdErrNotSent, Message: "not_after passed before the locker could be reached; never sent"}, now)
			case !now.Before(cmd.NotAfter):
				// Sent, never answered: the locker may have acted. Its answer
				// may still be under way for a moment.
				if now.Sub(cmd.NotAfter) > c.cfg.ResendAfter {
					c.finishLocked(e, CommandUnconfirmed, &CommandError{Code: CmdErrNoAnswer, Message: "sent, but the locker did not answer before not_after"}, now)
				}
			case now.Sub(e.lastSent) >= c.cfg.ResendAfter:
				on, ok := online[locker]
				if !ok {
					on = c.devices.Online(locker)
					online[locker] = on
				}
				if on {
					c.sendLocked(e, now)
				}
			}
		}
	}
}

// Run stores the changes and sweeps until ctx ends; then it stores what is
// left and returns. New commands and changes have a writer each (two
// transactions in flight: PostgreSQL's group commit then covers both).
func (c *Commands) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.runWriter(ctx, true, c.wakeIns, nil)
	}()
	tick := time.NewTicker(c.cfg.Sweep)
	defer tick.Stop()
	c.runWriter(ctx, false, c.wake, tick.C)
	wg.Wait()
	// Changes made by the last inserts (first sends).
	flush, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.mu.Lock()
	c.flushSentLocked(true)
	c.mu.Unlock()
	for c.store(flush, false) {
	}
}

func (c *Commands) runWriter(ctx context.Context, inserts bool, wake chan struct{}, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			flush, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			for c.store(flush, inserts) {
			}
			cancel()
			return
		case <-wake:
		case now := <-tick:
			c.sweep(now)
		}
		for c.store(ctx, inserts) {
		}
	}
}

// store writes one batch of queued changes; false when none were queued or
// the batch failed (it is queued again, new commands get the error).
func (c *Commands) store(ctx context.Context, insertQueue bool) bool {
	q := &c.queue
	if insertQueue {
		q = &c.inserts
	}
	c.mu.Lock()
	n := min(len(*q), c.cfg.BatchMax)
	batch := slices.Clone((*q)[:n])
	*q = (*q)[n:]
	var snaps []Command
	var entries []*cmdEntry
	seen := map[*cmdEntry]int{}
	var inserts []*insertOp
	for _, w := range batch {
		if w.insert != nil {
			inserts = append(inserts, w.insert)
			continue
		}
		if i, ok := seen[w.entry]; ok {
			snaps[i] = w.entry.cmd // the latest wins
			continue
		}
		seen[w.entry] = len(snaps)
		snaps = append(snaps, w.entry.cmd)
		entries = append(entries, w.entry)
	}
	c.mu.Unlock()
	if n == 0 {
		return false
	}
	start := time.Now()
	results, err := c.commit(ctx, inserts, snaps)
	if err != nil {
		c.log.Error("storing commands failed", "error", err, "inserts", len(inserts), "updates", len(snaps))
		c.m.storeErrors.Inc()
		for _, op := range inserts {
			op.result <- insertResult{err: fmt.Errorf("%w: %v", ErrNotStored, err)}
		}
		c.mu.Lock()
		for _, e := range entries {
			c.queue = append(c.queue, write{entry: e})
		}
		c.mu.Unlock()
		if ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		return false
	}
	c.m.commitSeconds.Observe(time.Since(start).Seconds())
	now := time.Now()
	var stale []int
	defer func() {
		for _, i := range stale {
			r := results[i]
			cmd, err := c.Get(ctx, r.cmd.ID)
			if err != nil {
				r = insertResult{err: err}
			} else {
				r.cmd = cmd
			}
			inserts[i].result <- r
		}
	}()
	var open []string
	c.mu.Lock()
	for i, op := range inserts {
		r := results[i]
		if r.created {
			e := &cmdEntry{cmd: r.cmd, done: make(chan struct{})}
			c.addLocked(e)
			c.m.created.WithLabelValues(r.cmd.Method).Inc()
			if c.devices.Online(r.cmd.LockerID) {
				c.sendLocked(e, now)
			} else if c.cluster != nil {
				// Maybe connected to another node: it adopts the command.
				c.makeRemoteLocked(e)
				open = append(open, r.cmd.LockerID)
			}
			r.cmd = e.cmd
		} else if e := c.entries[r.cmd.ID]; e != nil {
			r.cmd = e.cmd
		} else if r.err == nil && !CommandFinal(r.cmd.State) {
			// Read before the change writer stored its final state and
			// dropped it from memory: read it again below.
			stale = append(stale, i)
			continue
		}
		op.result <- r
	}
	for i, e := range entries {
		// Final and stored: the database answers for it from now on.
		if CommandFinal(snaps[i].State) && c.entries[e.cmd.ID] == e {
			c.forgetLocked(e)
		}
		if CommandFinal(snaps[i].State) && !e.stored {
			// Waiters (?wait) hear of the final state only once it is
			// stored: what they were told is what a GET or a restart shows.
			e.stored = true
			close(e.done)
		}
	}
	c.mu.Unlock()
	if len(open) > 0 {
		c.cluster.announce(clusterMsg{Open: open})
	}
	return true
}

// makeRemoteLocked leaves a command to the node its locker is connected to.
func (c *Commands) makeRemoteLocked(e *cmdEntry) {
	e.remote = true
	if m := c.byLocker[e.cmd.LockerID]; m != nil {
		delete(m, e.cmd.ID)
		if len(m) == 0 {
			delete(c.byLocker, e.cmd.LockerID)
		}
	}
}

// commit stores new commands and changed ones in one transaction, in one
// round trip: BEGIN, the changes, the inserts with their audit records (one
// statement, which returns the commands that were new), COMMIT. A repeated
// idempotency key then reads its first command, committed by then.
func (c *Commands) commit(ctx context.Context, inserts []*insertOp, snaps []Command) ([]insertResult, error) {
	results := make([]insertResult, len(inserts))
	p, err := pg.BeginPipeline(ctx, c.pool)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	b := &pgx.Batch{}
	// Changes first: a repeated idempotency key then reads the first command's latest state.
	_ = updateCommands(ctx, pg.Queue{Batch: b}, snaps)
	c.notify.queue(b, clusterMsg{Done: finalIDs(snaps)})
	isNew := map[string]bool{}
	if len(inserts) > 0 {
		n := len(inserts)
		ids, lockers, methods, params, callers, by, keys := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		notAfter, created := make([]time.Time, n), make([]time.Time, n)
		confirm := make([]int32, n)
		entries := make([]audit.Entry, n)
		for i, op := range inserts {
			m := op.cmd
			ids[i], lockers[i], methods[i], params[i], callers[i], by[i], keys[i] = m.ID, m.LockerID, m.Method, string(m.Params), m.caller, m.CreatedBy, m.IdempotencyKey
			notAfter[i], created[i], confirm[i] = m.NotAfter, m.CreatedAt, int32(m.confirmMs)
			entries[i] = audit.Entry{Action: audit.ActionCommand, ObjectType: "command", ObjectID: m.ID, After: m, Actor: op.actor}
		}
		sql, args, err := audit.RecordInserted(ctx, `INSERT INTO fleet_commands (id, locker_id, method, params, state, caller, created_by, idempotency_key, not_after, confirm_ms, created_at)
			SELECT u.id, u.locker, u.method, u.params, 'pending', u.caller, u.by, NULLIF(u.key, ''), u.not_after, u.confirm, u.created
			FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::int[], $10::timestamptz[])
				WITH ORDINALITY AS u(id, locker, method, params, caller, by, key, not_after, confirm, created, n)
			ORDER BY u.n
			ON CONFLICT (caller, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING id`, []any{ids, lockers, methods, params, callers, by, keys, notAfter, confirm, created}, entries)
		if err != nil {
			return nil, err
		}
		b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
			var id string
			_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
				isNew[id] = true
				return nil
			})
			return err
		})
	}
	if err := p.Send(ctx, b, true); err != nil {
		return nil, fmt.Errorf("store commands: %w", err)
	}
	var dupCallers, dupKeys []string
	for i, op := range inserts {
		if isNew[op.cmd.ID] {
			results[i] = insertResult{cmd: op.cmd, created: true}
		} else {
			dupCallers, dupKeys = append(dupCallers, op.cmd.caller), append(dupKeys, op.cmd.IdempotencyKey)
		}
	}
	if len(dupKeys) == 0 {
		return results, nil
	}
	// ON CONFLICT waited for the transaction holding the key: the first
	// command is committed.
	// The new commands are stored whatever happens here: a failed lookup
	// fails the repeated requests only.
	rows, err := c.pool.Query(ctx, `SELECT `+cmdColumns+` FROM fleet_commands
		WHERE (caller, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, dupCallers, dupKeys)
	var firsts []Command
	if err == nil {
		firsts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Command, error) { return scanCommand(r) })
	}
	if err != nil {
		for i, op := range inserts {
			if !isNew[op.cmd.ID] {
				results[i] = insertResult{err: fmt.Errorf("find the command of idempotency key %q: %w", op.cmd.IdempotencyKey, err)}
			}
		}
		return results, nil
	}
	byKey := map[[2]string]Command{}
	for _, f := range firsts {
		byKey[[2]string{f.caller, f.IdempotencyKey}] = f
	}
	for i, op := range inserts {
		if isNew[op.cmd.ID] {
			continue
		}
		first, ok := byKey[[2]string{op.cmd.caller, op.cmd.IdempotencyKey}]
		switch {
		case !ok:
			results[i] = insertResult{err: errors.New("idempotency key conflict, but no command holds the key")}
		case first.LockerID != op.cmd.LockerID || first.Method != op.cmd.Method || !sameJSON(first.Params, op.cmd.Params):
			results[i] = insertResult{err: fmt.Errorf("%w: key %q belongs to command %s (%s %s %s)", ErrIdempotencyConflict,
				op.cmd.IdempotencyKey, first.ID, first.LockerID, first.Method, first.Params)}
		default:
			results[i] = insertResult{cmd: first}
		}
	}
	return results, nil
}

// updateCommands stores the snapshots of existing commands. A final state
// once stored stays: a later snapshot may rewrite it only with the same
// state (the twin writer stores confirmations while the change writer may
// hold an older snapshot of the same command).
//
// One statement per command, by primary key, queued in the caller's batch
// (one round trip for all). A single UPDATE joined with unnest() was a seq
// scan: its generic plan, cached per connection, was made while the table
// was small and stayed a seq scan as the table grew (without autovacuum's
// ANALYZE nothing invalidates it), scanning every command per batch.
func updateCommands(ctx context.Context, tx audit.Execer, snaps []Command) error {
	// In ID order: the twin writer and the change writer lock rows in
	// the same order, so they wait for each other but never deadlock.
	snaps = slices.SortedFunc(slices.Values(snaps), func(a, b Command) int { return strings.Compare(a.ID, b.ID) })
	for _, s := range snaps {
		var result *string
		if len(s.Result) > 0 {
			r := string(s.Result)
			result = &r
		}
		var ec, em string
		if s.Error != nil {
			ec, em = s.Error.Code, s.Error.Message
		}
		if _, err := tx.Exec(ctx, `UPDATE fleet_commands SET state = $2, sent_at = $3, attempts = $4,
				answered_at = $5, confirmed_at = $6, finished_at = $7, result = $8::jsonb,
				error_code = NULLIF($9, ''), error_message = NULLIF($10, '')
			WHERE id = $1 AND (state IN ('pending', 'sent') OR state = $2)`,
			s.ID, s.State, s.SentAt, int32(s.Attempts), s.AnsweredAt, s.ConfirmedAt, s.FinishedAt, result, ec, em); err != nil {
			return fmt.Errorf("update command %s: %w", s.ID, err)
		}
	}
	return nil
}

func finalIDs(snaps []Command) []string {
	var ids []string
	for _, s := range snaps {
		if CommandFinal(s.State) {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

func sameJSON(a, b json.RawMessage) bool {
	na, err1 := normalJSON(a)
	nb, err2 := normalJSON(b)
	return err1 == nil && err2 == nil && bytes.Equal(na, nb)
}

// Get returns one command.
func (c *Commands) Get(ctx context.Context, id string) (Command, error) {
	c.mu.Lock()
	var mem *Command
	if e := c.entries[id]; e != nil && !e.remote {
		cmd := e.cmd
		if CommandFinal(cmd.State) {
			c.mu.Unlock()
			return cmd, nil
		}
		mem = &cmd
	}
	c.mu.Unlock()
	// An open command is read from the database too: its final state may be
	// stored a moment before this node's memory has it, and another node
	// (or this one's ?wait=) may already have answered with that state.
	// Without the database (or when it is slow to answer), this node's
	// memory answers.
	qctx := ctx
	if mem != nil {
		var cancel context.CancelFunc
		qctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	cmd, err := scanCommand(c.pool.QueryRow(qctx, `SELECT `+cmdColumns+` FROM fleet_commands WHERE id = $1`, id))
	if err != nil && mem != nil && !errors.Is(err, pgx.ErrNoRows) {
		return *mem, nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Command{}, fmt.Errorf("%w: command %s", ErrNotFound, id)
	}
	if err != nil {
		return Command{}, fmt.Errorf("get command %s: %w", id, err)
	}
	return c.overlay(cmd), nil
}

// overlay replaces a stored command by its newer state in memory.
func (c *Commands) overlay(cmd Command) Command {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[cmd.ID]; e != nil && !e.remote && !(CommandFinal(cmd.State) && !CommandFinal(e.cmd.State)) {
		return e.cmd
	}
	return cmd // the database is newer than a remote entry, or holds the final state first
}

// Wait returns the command once its state is final or ctx ends (then with its
// state at that moment).
func (c *Commands) Wait(ctx context.Context, id string) (Command, error) {
	c.mu.Lock()
	e := c.entries[id]
	c.mu.Unlock()
	if e != nil {
		select {
		case <-e.done:
			// Final and stored: what was stored, without reading it back
			// (a remote entry holds what was read back).
			c.mu.Lock()
			cmd := e.cmd
			c.mu.Unlock()
			return cmd, nil
		case <-ctx.Done():
		}
	}
	return c.Get(context.WithoutCancel(ctx), id)
}

// CommandFilter selects commands for List.
type CommandFilter struct {
	LockerID string
	State    string
	Carrier  string // only lockers of this carrier
	Limit    int
}

// List returns commands, newest first.
func (c *Commands) List(ctx context.Context, f CommandFilter) ([]Command, error) {
	if f.State != "" && !slices.Contains(CommandStates, f.State) {
		return nil, fmt.Errorf("%w: state must be one of %s", ErrInvalid, strings.Join(CommandStates, ", "))
	}
	if f.Limit <= 0 || f.Limit > MaxPageSize {
		f.Limit = min(max(f.Limit, 100), MaxPageSize)
	}
	q := `SELECT ` + cmdColumns + ` FROM fleet_commands WHERE ($1 = '' OR locker_id = $1) AND ($2 = '' OR state = $2)
		AND ($3 = '' OR locker_id IN (SELECT id FROM fleet_lockers WHERE ` + carrierAccessSQL("$3") + `))
		ORDER BY created_at DESC, id DESC LIMIT $4`
	rows, err := c.pool.Query(ctx, q, f.LockerID, f.State, f.Carrier, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	cmds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Command, error) { return scanCommand(r) })
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	out := cmds[:0]
	for _, cmd := range cmds {
		cmd = c.overlay(cmd)
		if f.State == "" || cmd.State == f.State {
			out = append(out, cmd)
		}
	}
	return out, nil
}

type cmdMetrics struct {
	created        *prometheus.CounterVec // method
	finished       *prometheus.CounterVec // method, state
	seconds        *prometheus.HistogramVec
	sends          prometheus.Counter
	answersIgnored prometheus.Counter
	storeErrors    prometheus.Counter
	commitSeconds  prometheus.Histogram
}

func newCmdMetrics(reg prometheus.Registerer, open func() float64) *cmdMetrics {
	m := &cmdMetrics{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_fleet_commands_created_total", Help: "Commands created, by method (repeats of an idempotency key not counted)."}, []string{"method"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_fleet_commands_finished_total", Help: "Commands that reached a final state, by method and state."}, []string{"method", "state"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lockerhub_fleet_command_seconds", Help: "Time from a command's creation to its final state, by method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"method"}),
		sends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_fleet_command_sends_total", Help: "Command requests published to lockers, re-sends included."}),
		answersIgnored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_fleet_command_answers_ignored_total", Help: "Answers to commands already answered or settled, or unknown."}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_fleet_command_store_errors_total", Help: "Failed transactions of the command writer."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lockerhub_fleet_command_commit_seconds", Help: "Duration of the command writer's transactions.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.created, m.finished, m.seconds, m.sends, m.answersIgnored, m.storeErrors, m.commitSeconds,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockerhub_fleet_commands_open", Help: "Commands in memory: open, or final and not yet stored."}, open))
	}
	return m
}
