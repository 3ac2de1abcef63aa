package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

// auditCommand is `hubctl audit`, listed before `api`.
var auditCommand = command{
	name: "audit", args: "[--actor NAME] [--object TYPE[:ID]] [--action A] [--since 24h] [--limit N]", nargs: 0,
	summary: "show the audit log: who changed what, when, from where (admins)",
	doc: "Lists audit records newest first: time, actor (kind, name, address), action, object and\n" +
		"what changed (for an update, the fields with their old and new values). --object locker:L1\n" +
		"shows one locker's story, --object user all user changes; --since takes a duration (24h, 7d)\n" +
		"or an RFC 3339 time. --json prints the API's records.",
	setup: func(fs *flag.FlagSet) runFunc {
		var f apiclient.AuditFilter
		fs.StringVar(&f.Actor, "actor", "", "only records by `name` (username, token or client name, locker ID)")
		object := fs.String("object", "", "only records of `TYPE[:ID]`, e.g. locker:L1, model, user:ana")
		fs.StringVar(&f.Action, "action", "", "only records of this `action` (create, update, delete, command, login_failed, …)")
		since := fs.String("since", "24h", "records from this `duration` ago (24h, 7d) or since an RFC 3339 time; \"\" for all")
		fs.IntVar(&f.Limit, "limit", 50, "at most `N` records (up to 1000)")
		return func(ctx context.Context, c *cli, args []string) error {
			if *object != "" {
				f.ObjectType, f.ObjectID, _ = strings.Cut(*object, ":")
			}
			if *since != "" {
				t, err := parseSince(*since, c.now())
				if err != nil {
					return &usageError{fmt.Sprintf("audit: --since %q: want a duration such as 24h or 7d, or an RFC 3339 time", *since)}
				}
				f.From = t
			}
			return c.audit(ctx, f)
		}
	},
}

func init() {
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append([]command{auditCommand}, commands[i:]...)...)
			return
		}
	}
	commands = append(commands, auditCommand)
}

// parseSince reads 24h, 7d, 90m or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n >= 0 && fmt.Sprint(n) == d {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func (c *cli) audit(ctx context.Context, f apiclient.AuditFilter) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	p, err := api.Audit(ctx, f)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if len(p.Records) == 0 {
		fmt.Fprintln(c.stderr, "No audit records match.")
		return nil
	}
	if err := writeAuditTable(c.stdout, p.Records, c.loc); err != nil {
		return err
	}
	if p.NextCursor != "" {
		fmt.Fprintf(c.stderr, "More records are older than these: raise --limit or narrow --since.\n")
	}
	return nil
}

func writeAuditTable(w io.Writer, rs []apiclient.AuditRecord, loc *time.Location) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "TIME\tACTOR\tFROM\tACTION\tOBJECT\tCHANGE")
	for _, r := range rs {
		actor := r.Actor.Kind
		if r.Actor.Name != "" {
			actor += ":" + r.Actor.Name
		}
		obj := r.ObjectType
		if r.ObjectID != "" {
			obj += ":" + r.ObjectID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", fmtTime(r.At, loc), actor, orDash(r.Actor.Addr), r.Action, obj,
			orDash(changeSummary(r.Before, r.After)))
	}
	return tw.Flush()
}

// changeSummary says what changed in one line: the top-level fields whose
// values differ, old → new, each value cut short.
func changeSummary(before, after json.RawMessage) string {
	var b, a map[string]json.RawMessage
	_ = json.Unmarshal(before, &b)
	_ = json.Unmarshal(after, &a)
	if b == nil && a == nil {
		return ""
	}
	keys := map[string]bool{}
	for k := range b {
		keys[k] = true
	}
	for k := range a {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		if k == "updated_at" || k == "created_at" {
			continue
		}
		if b == nil || a == nil || !jsonEqual(b[k], a[k]) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		switch {
		case b == nil:
			if len(names) > 4 {
				return "created (" + strings.Join(names, ", ") + ")"
			}
			parts = append(parts, k+"="+short(a[k]))
		case a == nil:
			return "deleted"
		default:
			parts = append(parts, k+": "+short(b[k])+" → "+short(a[k]))
		}
	}
	return strings.Join(parts, "; ")
}

func jsonEqual(x, y json.RawMessage) bool {
	var a, b any
	_ = json.Unmarshal(x, &a)
	_ = json.Unmarshal(y, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func short(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	if s == "" {
		s = "-"
	}
	if r := []rune(s); len(r) > 40 {
		s = string(r[:39]) + "…"
	}
	return s
}
