package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Matcher selects alarms by one label: kind, severity, locker, cell,
// segment, carrier or model. Op is "=", "!=", "=~" or "!~" (a regular
// expression anchored at both ends). For segment and carrier, "=" and "=~"
// match when any of the locker's values does; "!=" and "!~" when none does.
type Matcher struct {
	Name  string `json:"name"`
	Op    string `json:"op"`
	Value string `json:"value"`

	re *regexp.Regexp
}

// MatcherNames are the labels a matcher or group_by may name.
var MatcherNames = []string{"kind", "severity", "locker", "cell", "segment", "carrier", "model"}

func (m *Matcher) compile() error {
	if !slices.Contains(MatcherNames, m.Name) {
		return fmt.Errorf("%w: matcher name must be one of %s, got %q", ErrInvalid, strings.Join(MatcherNames, ", "), m.Name)
	}
	if len(m.Value) > 500 {
		return fmt.Errorf("%w: matcher value is at most 500 characters", ErrInvalid)
	}
	switch m.Op {
	case "=", "!=":
	case "=~", "!~":
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return fmt.Errorf("%w: matcher %s%s: %v", ErrInvalid, m.Name, m.Op, err)
		}
		m.re = re
	default:
		return fmt.Errorf("%w: matcher op must be =, !=, =~ or !~, got %q", ErrInvalid, m.Op)
	}
	return nil
}

func (m *Matcher) matches(a *Alarm) bool {
	vals := a.labelValues(m.Name)
	any := false
	for _, v := range vals {
		var ok bool
		switch m.Op {
		case "=", "!=":
			ok = v == m.Value
		default:
			ok = m.re != nil && m.re.MatchString(v)
		}
		if ok {
			any = true
			break
		}
	}
	if len(vals) == 0 {
		any = m.Op == "=" && m.Value == "" || (m.re != nil && m.re.MatchString(""))
	}
	if m.Op == "!=" || m.Op == "!~" {
		return !any
	}
	return any
}

func matchAll(ms []Matcher, a *Alarm) bool {
	for i := range ms {
		if !ms[i].matches(a) {
			return false
		}
	}
	return true
}

func compileAll(ms []Matcher) error {
	if len(ms) > 50 {
		return fmt.Errorf("%w: at most 50 matchers", ErrInvalid)
	}
	for i := range ms {
		if err := ms[i].compile(); err != nil {
			return err
		}
	}
	return nil
}

// Receiver types.
const (
	ReceiverWebhook      = "webhook"      // JSON body of our own, HMAC-signed
	ReceiverAlertmanager = "alertmanager" // Alertmanager's webhook body (version 4), HMAC-signed when a secret is set
	ReceiverEmail        = "email"        // SMTP through the outbox
	ReceiverSMS          = "sms"          // the SMS gateway through the outbox
	ReceiverChat         = "chat"         // {"text": …} to a chat's incoming webhook
)

// Receiver is where notifications go.
type Receiver struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	URL    string `json:"url,omitempty"`    // webhook, alertmanager, chat
	Secret string `json:"secret,omitempty"` // webhook, alertmanager: HMAC key (never shown back)
	To     string `json:"to,omitempty"`     // email: address; sms: E.164 number
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	e164RE = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
)

func (r Receiver) validate() error {
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("%w: receiver name %q must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'", ErrInvalid, r.Name)
	}
	switch r.Type {
	case ReceiverWebhook, ReceiverAlertmanager, ReceiverChat:
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(r.URL) > 2000 {
			return fmt.Errorf("%w: receiver %s needs an http(s) url, got %q", ErrInvalid, r.Name, r.URL)
		}
		if r.Type == ReceiverWebhook && r.Secret == "" {
			return fmt.Errorf("%w: webhook receiver %s needs a secret to sign with", ErrInvalid, r.Name)
		}
	case ReceiverEmail:
		a, err := mail.ParseAddress(r.To)
		if err != nil || a.Address != r.To {
			return fmt.Errorf("%w: e-mail receiver %s needs a plain address in \"to\", got %q", ErrInvalid, r.Name, r.To)
		}
	case ReceiverSMS:
		if !e164RE.MatchString(r.To) {
			return fmt.Errorf("%w: SMS receiver %s needs an E.164 number in \"to\", got %q", ErrInvalid, r.Name, r.To)
		}
	default:
		return fmt.Errorf("%w: receiver type must be webhook, alertmanager, email, sms or chat, got %q", ErrInvalid, r.Type)
	}
	return nil
}

// Level is one level of an on-call schedule: after After without an
// acknowledgement, the person on shift in Rotation is notified too. The
// rotation hands over every Shift, counted from Start.
type Level struct {
	After    Duration  `json:"after"`
	Rotation []string  `json:"rotation"` // receiver names, in turn
	Shift    Duration  `json:"shift"`    // [168h]
	Start    time.Time `json:"start"`    // [2026-01-05, a Monday]
}

// Schedule is an on-call schedule: levels, the first at After 0.
type Schedule struct {
	Name   string  `json:"name"`
	Levels []Level `json:"levels"`
}

var rotationEpoch = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// onShift returns the receiver of level l at t.
func (l Level) onShift(t time.Time) string {
	if len(l.Rotation) == 0 {
		return ""
	}
	shift := time.Duration(l.Shift)
	if shift <= 0 {
		shift = 7 * 24 * time.Hour
	}
	start := l.Start
	if start.IsZero() {
		start = rotationEpoch
	}
	n := int64(t.Sub(start) / shift)
	i := int(n % int64(len(l.Rotation)))
	if i < 0 {
		i += len(l.Rotation)
	}
	return l.Rotation[i]
}

// Route is a node of the routing tree. An alarm goes down the first child
// that matches it (and on to the next ones when that child has Continue);
// when none does, the node itself takes it. Unset fields are inherited
// from the parent.
type Route struct {
	Matchers       []Matcher `json:"matchers,omitempty"`
	Receivers      []string  `json:"receivers,omitempty"`
	Schedule       string    `json:"schedule,omitempty"`
	GroupBy        []string  `json:"group_by,omitempty"`
	GroupWait      *Duration `json:"group_wait,omitempty"`
	GroupInterval  *Duration `json:"group_interval,omitempty"`
	RepeatInterval *Duration `json:"repeat_interval,omitempty"`
	Continue       bool      `json:"continue,omitempty"`
	Routes         []Route   `json:"routes,omitempty"`
}

// Routing is the whole routing configuration.
type Routing struct {
	Receivers []Receiver `json:"receivers"`
	Schedules []Schedule `json:"schedules"`
	Route     Route      `json:"route"`
}

func dur(d time.Duration) *Duration { v := Duration(d); return &v }

// DefaultRouting is used until an operator sets one: group by locker;
// security kinds at once, fleet-wide kinds grouped by segment for 30 s
// (DESIGN decision 22). It has no receivers: nothing is sent.
func DefaultRouting() Routing {
	r := Routing{Receivers: []Receiver{}, Schedules: []Schedule{}, Route: Route{
		GroupBy: []string{"locker"}, GroupWait: dur(10 * time.Second), GroupInterval: dur(time.Minute), RepeatInterval: dur(4 * time.Hour),
		Routes: DefaultChildRoutes(nil),
	}}
	_ = r.validate()
	return r
}

// DefaultChildRoutes are the routes of decision 22 for the given receivers.
func DefaultChildRoutes(receivers []string) []Route {
	return []Route{
		{Matchers: []Matcher{{Name: "kind", Op: "=~", Value: "door_forced|tamper"}}, Receivers: receivers, GroupWait: dur(0)},
		{Matchers: []Matcher{{Name: "kind", Op: "=~", Value: "offline|mains_lost"}}, Receivers: receivers, GroupBy: []string{"segment", "kind"}, GroupWait: dur(30 * time.Second)},
	}
}

// resolved is a route with every field inherited, and its path ("0.1.2").
type resolved struct {
	Path           string
	Receivers      []string
	Schedule       *Schedule
	GroupBy        []string
	GroupWait      time.Duration
	GroupInterval  time.Duration
	RepeatInterval time.Duration
}

func (rt *Routing) validate() error {
	names := map[string]bool{}
	if len(rt.Receivers) > 500 || len(rt.Schedules) > 100 {
		return fmt.Errorf("%w: at most 500 receivers and 100 schedules", ErrInvalid)
	}
	for _, r := range rt.Receivers {
		if err := r.validate(); err != nil {
			return err
		}
		if names[r.Name] {
			return fmt.Errorf("%w: receiver %s is named twice", ErrInvalid, r.Name)
		}
		names[r.Name] = true
	}
	scheds := map[string]bool{}
	for _, s := range rt.Schedules {
		if !nameRE.MatchString(s.Name) || scheds[s.Name] {
			return fmt.Errorf("%w: schedule name %q is not valid or not unique", ErrInvalid, s.Name)
		}
		scheds[s.Name] = true
		if len(s.Levels) == 0 || len(s.Levels) > 10 {
			return fmt.Errorf("%w: schedule %s needs 1 to 10 levels", ErrInvalid, s.Name)
		}
		for i, l := range s.Levels {
			switch {
			case i == 0 && l.After != 0:
				return fmt.Errorf("%w: schedule %s: the first level starts at once (after 0)", ErrInvalid, s.Name)
			case i > 0 && l.After <= s.Levels[i-1].After:
				return fmt.Errorf("%w: schedule %s: level %d must come after level %d", ErrInvalid, s.Name, i+1, i)
			case len(l.Rotation) == 0:
				return fmt.Errorf("%w: schedule %s: level %d has no one in its rotation", ErrInvalid, s.Name, i+1)
			case l.Shift < 0:
				return fmt.Errorf("%w: schedule %s: shift must be positive", ErrInvalid, s.Name)
			}
			for _, n := range l.Rotation {
				if !names[n] {
					return fmt.Errorf("%w: schedule %s names receiver %q, which does not exist", ErrInvalid, s.Name, n)
				}
			}
		}
	}
	var walk func(r *Route, depth int, root bool) error
	walk = func(r *Route, depth int, root bool) error {
		if depth > 10 {
			return fmt.Errorf("%w: routes nest at most 10 deep", ErrInvalid)
		}
		if root && len(r.Matchers) > 0 {
			return fmt.Errorf("%w: the root route matches every alarm and takes no matchers", ErrInvalid)
		}
		if err := compileAll(r.Matchers); err != nil {
			return err
		}
		for _, n := range r.Receivers {
			if !names[n] {
				return fmt.Errorf("%w: a route names receiver %q, which does not exist", ErrInvalid, n)
			}
		}
		if r.Schedule != "" && !scheds[r.Schedule] {
			return fmt.Errorf("%w: a route names schedule %q, which does not exist", ErrInvalid, r.Schedule)
		}
		for _, g := range r.GroupBy {
			if !slices.Contains(MatcherNames, g) {
				return fmt.Errorf("%w: group_by names %q; it takes %s", ErrInvalid, g, strings.Join(MatcherNames, ", "))
			}
		}
		for _, d := range []*Duration{r.GroupWait, r.GroupInterval, r.RepeatInterval} {
			if d != nil && (*d < 0 || time.Duration(*d) > 7*24*time.Hour) {
				return fmt.Errorf("%w: route durations must be between 0 and 168h", ErrInvalid)
			}
		}
		if r.RepeatInterval != nil && *r.RepeatInterval < Duration(time.Second) {
			return fmt.Errorf("%w: repeat_interval must be at least 1s", ErrInvalid)
		}
		if len(r.Routes) > 100 {
			return fmt.Errorf("%w: at most 100 child routes", ErrInvalid)
		}
		for i := range r.Routes {
			if err := walk(&r.Routes[i], depth+1, false); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(&rt.Route, 0, true)
}

func (rt *Routing) schedule(name string) *Schedule {
	for i := range rt.Schedules {
		if rt.Schedules[i].Name == name {
			return &rt.Schedules[i]
		}
	}
	return nil
}

func (rt *Routing) receiver(name string) (Receiver, bool) {
	for _, r := range rt.Receivers {
		if r.Name == name {
			return r, true
		}
	}
	return Receiver{}, false
}

// routes returns the routes that take a.
func (rt *Routing) routes(a *Alarm) []resolved {
	root := resolved{Path: "0", GroupBy: []string{"locker"}, GroupWait: 10 * time.Second, GroupInterval: time.Minute, RepeatInterval: 4 * time.Hour}
	var out []resolved
	var walk func(r *Route, parent resolved) bool
	walk = func(r *Route, here resolved) bool {
		if !matchAll(r.Matchers, a) {
			return false
		}
		if r.Receivers != nil {
			here.Receivers = r.Receivers
		}
		if r.Schedule != "" {
			here.Schedule = rt.schedule(r.Schedule)
		}
		if r.GroupBy != nil {
			here.GroupBy = r.GroupBy
		}
		if r.GroupWait != nil {
			here.GroupWait = time.Duration(*r.GroupWait)
		}
		if r.GroupInterval != nil {
			here.GroupInterval = time.Duration(*r.GroupInterval)
		}
		if r.RepeatInterval != nil {
			here.RepeatInterval = time.Duration(*r.RepeatInterval)
		}
		taken := false
		for i := range r.Routes {
			child := here
			child.Path = fmt.Sprintf("%s.%d", here.Path, i)
			if walk(&r.Routes[i], child) {
				taken = true
				if !r.Routes[i].Continue {
					break
				}
			}
		}
		if !taken {
			out = append(out, here)
		}
		return true
	}
	walk(&rt.Route, root)
	return out
}

// route returns the resolved route at path (for a group made under an
// older configuration that no longer has it: the root's).
func (rt *Routing) route(path string) resolved {
	r := resolved{Path: "0", GroupBy: []string{"locker"}, GroupWait: 10 * time.Second, GroupInterval: time.Minute, RepeatInterval: 4 * time.Hour}
	node := &rt.Route
	parts := strings.Split(path, ".")
	apply := func(n *Route) {
		if n.Receivers != nil {
			r.Receivers = n.Receivers
		}
		if n.Schedule != "" {
			r.Schedule = rt.schedule(n.Schedule)
		}
		if n.GroupBy != nil {
			r.GroupBy = n.GroupBy
		}
		if n.GroupWait != nil {
			r.GroupWait = time.Duration(*n.GroupWait)
		}
		if n.GroupInterval != nil {
			r.GroupInterval = time.Duration(*n.GroupInterval)
		}
		if n.RepeatInterval != nil {
			r.RepeatInterval = time.Duration(*n.RepeatInterval)
		}
	}
	apply(node)
	for _, p := range parts[1:] {
		var i int
		if _, err := fmt.Sscan(p, &i); err != nil || i < 0 || i >= len(node.Routes) {
			break
		}
		node = &node.Routes[i]
		apply(node)
		r.Path += "." + p
	}
	return r
}

func loadRouting(ctx context.Context, pool *pgxpool.Pool) (Routing, error) {
	var doc []byte
	err := pool.QueryRow(ctx, `SELECT doc FROM alarms_routing WHERE id = 1`).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return DefaultRouting(), nil
	}
	if err != nil {
		return Routing{}, fmt.Errorf("alarm routing: %w", err)
	}
	var rt Routing
	if err := json.Unmarshal(doc, &rt); err != nil {
		return Routing{}, fmt.Errorf("alarm routing: %w", err)
	}
	if err := rt.validate(); err != nil {
		return Routing{}, fmt.Errorf("alarm routing as stored: %w", err)
	}
	return rt, nil
}

// Routing returns the routing configuration with the receivers' secrets
// left out.
func (s *Store) Routing() Routing {
	s.mu.RLock()
	rt := s.routing
	s.mu.RUnlock()
	return redactRouting(rt)
}

func redactRouting(rt Routing) Routing {
	out := rt
	out.Receivers = make([]Receiver, len(rt.Receivers))
	for i, r := range rt.Receivers {
		if r.Secret != "" {
			r.Secret = "(set)"
		}
		out.Receivers[i] = r
	}
	return out
}

// SetRouting validates and stores a new routing configuration (audited,
// secrets redacted). A receiver given with secret "(set)" keeps the secret
// it had.
func (s *Store) SetRouting(ctx context.Context, rt Routing) (Routing, error) {
	s.mu.RLock()
	old := s.routing
	s.mu.RUnlock()
	if rt.Receivers == nil {
		rt.Receivers = []Receiver{}
	}
	if rt.Schedules == nil {
		rt.Schedules = []Schedule{}
	}
	for i, r := range rt.Receivers {
		if r.Secret == "(set)" {
			prev, ok := old.receiver(r.Name)
			if !ok || prev.Secret == "" {
				return Routing{}, fmt.Errorf("%w: receiver %s has no secret to keep", ErrInvalid, r.Name)
			}
			rt.Receivers[i].Secret = prev.Secret
		}
	}
	if err := rt.validate(); err != nil {
		return Routing{}, err
	}
	doc, err := json.Marshal(rt)
	if err != nil {
		return Routing{}, err
	}
	if len(doc) > 1<<20 {
		return Routing{}, fmt.Errorf("%w: the routing document is at most 1 MiB", ErrInvalid)
	}
	err = pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO alarms_routing (id, doc, updated_at) VALUES (1, $1, now())
			ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_at = now()`, doc); err != nil {
			return fmt.Errorf("store alarm routing: %w", err)
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionUpdate, ObjectType: "alarm_routing", ObjectID: "1",
			Before: redactRouting(old), After: redactRouting(rt)})
	})
	if err != nil {
		return Routing{}, err
	}
	s.mu.Lock()
	s.routing = rt
	s.mu.Unlock()
	return redactRouting(rt), nil
}
