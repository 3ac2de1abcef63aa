package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Alarms: list, acknowledge, resolve, silence (docs/alarms.md).
var alarmCommands = []command{
	{
		name: "alarm list", args: "[--state open|firing|acknowledged|resolved] [--locker ID] [--kind K] [--limit N]", nargs: 0,
		summary: "list alarms, newest first (default: the open ones)",
		setup: func(fs *flag.FlagSet) runFunc {
			var f apiclient.AlarmFilter
			fs.StringVar(&f.State, "state", "open", "only alarms in `state` (open = not resolved; \"\" = all)")
			fs.StringVar(&f.Locker, "locker", "", "only the alarms of locker `ID`")
			fs.StringVar(&f.Kind, "kind", "", "only alarms of `kind` (door_forced, tamper, offline, mains_lost, …)")
			fs.IntVar(&f.Limit, "limit", 0, "at most `N` alarms (hub default 100)")
			return func(ctx context.Context, c *cli, args []string) error { return c.alarmList(ctx, f) }
		},
	},
	{
		name: "alarm ack", args: "ID [--note TEXT]", nargs: 1,
		summary: "acknowledge a firing alarm: its reminders and escalation stop",
		setup: func(fs *flag.FlagSet) runFunc {
			note := fs.String("note", "", "what you are doing about it")
			return func(ctx context.Context, c *cli, args []string) error { return c.alarmAck(ctx, args[0], *note, false) }
		},
	},
	{
		name: "alarm resolve", args: "ID [--note TEXT]", nargs: 1,
		summary: "resolve an open alarm by hand",
		setup: func(fs *flag.FlagSet) runFunc {
			note := fs.String("note", "", "why")
			return func(ctx context.Context, c *cli, args []string) error { return c.alarmAck(ctx, args[0], *note, true) }
		},
	},
	{
		name: "alarm silence", args: "MATCHER… --for DURATION [--comment TEXT]", nargs: -1,
		summary: "silence the notifications of matching alarms for a time",
		doc: "A matcher is NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX, NAME one of kind, severity,\n" +
			"locker, cell, segment, carrier, model. Example: hubctl alarm silence locker=L1 kind=~door_.* --for 2h",
		setup: func(fs *flag.FlagSet) runFunc {
			d := fs.Duration("for", time.Hour, "how long (e.g. 30m, 2h; at most 2160h)")
			comment := fs.String("comment", "", "why (shown with the silence)")
			return func(ctx context.Context, c *cli, args []string) error { return c.alarmSilence(ctx, args, *d, *comment) }
		},
	},
	{
		name: "alarm silences", args: "", nargs: 0,
		summary: "list the silences that have not ended",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.alarmSilences(ctx) }
		},
	},
	{
		name: "alarm unsilence", args: "SILENCE-ID", nargs: 1,
		summary: "end a silence now",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.alarmUnsilence(ctx, args[0]) }
		},
	},
}

func init() {
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append(append([]command{}, alarmCommands...), commands[i:]...)...)
			return
		}
	}
	commands = append(commands, alarmCommands...)
}

func (c *cli) alarmList(ctx context.Context, f apiclient.AlarmFilter) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	list, err := api.Alarms(ctx, f)
	if err != nil {
		return fmt.Errorf("alarm list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stderr, "No alarms match.")
		return nil
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tSEVERITY\tKIND\tLOCKER\tCELL\tSTATE\tSTARTED\tSUMMARY")
	for _, a := range list {
		state := a.State
		var marks []string
		if a.Muted {
			marks = append(marks, "muted")
		}
		if a.Silenced {
			marks = append(marks, "silenced")
		}
		if a.Inhibited {
			marks = append(marks, "inhibited")
		}
		if a.AckedBy != "" && a.State == "acknowledged" {
			marks = append(marks, "by "+a.AckedBy)
		}
		if len(marks) > 0 {
			state += " (" + strings.Join(marks, ", ") + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Severity, a.Kind, a.LockerID, orDash(a.Cell), state, fmtTime(a.StartedAt, c.loc), a.Summary)
	}
	return tw.Flush()
}

func parseAlarmID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("the alarm ID is a number (see hubctl alarm list), got %q", s)
	}
	return id, nil
}

func (c *cli) alarmAck(ctx context.Context, arg, note string, resolve bool) error {
	id, err := parseAlarmID(arg)
	if err != nil {
		return err
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	verb := "acknowledged"
	var a apiclient.Alarm
	if resolve {
		verb = "resolved"
		a, err = api.ResolveAlarm(ctx, id, note)
	} else {
		a, err = api.AckAlarm(ctx, id, note)
	}
	if err != nil {
		return fmt.Errorf("alarm %s: %w", strings.TrimSuffix(verb, "d"), err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Alarm %d (%s, locker %s) %s.\n", a.ID, a.Kind, a.LockerID, verb)
	return nil
}

// parseMatcher reads NAME=VALUE, NAME!=VALUE, NAME=~RE, NAME!~RE.
func parseMatcher(s string) (apiclient.AlarmMatcher, error) {
	for _, op := range []string{"!=", "=~", "!~", "="} {
		if i := strings.Index(s, op); i > 0 {
			return apiclient.AlarmMatcher{Name: s[:i], Op: op, Value: s[i+len(op):]}, nil
		}
	}
	return apiclient.AlarmMatcher{}, usagef("matcher %q: write NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX", s)
}

func (c *cli) alarmSilence(ctx context.Context, args []string, d time.Duration, comment string) error {
	if len(args) == 0 {
		return usagef("alarm silence: give at least one matcher, e.g. locker=L1")
	}
	if d <= 0 {
		return usagef("alarm silence: --for must be positive")
	}
	var ms []apiclient.AlarmMatcher
	for _, a := range args {
		m, err := parseMatcher(a)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	s, err := api.CreateSilence(ctx, apiclient.Silence{Matchers: ms, EndsAt: time.Now().Add(d), Comment: comment})
	if err != nil {
		return fmt.Errorf("alarm silence: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Silence %d until %s.\n", s.ID, fmtTime(s.EndsAt, c.loc))
	return nil
}

func (c *cli) alarmSilences(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	list, err := api.Silences(ctx)
	if err != nil {
		return fmt.Errorf("alarm silences: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stderr, "No silences.")
		return nil
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tMATCHERS\tENDS\tBY\tCOMMENT")
	for _, s := range list {
		var ms []string
		for _, m := range s.Matchers {
			ms = append(ms, m.Name+m.Op+m.Value)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", s.ID, strings.Join(ms, " "), fmtTime(s.EndsAt, c.loc), s.CreatedBy, orDash(s.Comment))
	}
	return tw.Flush()
}

func (c *cli) alarmUnsilence(ctx context.Context, arg string) error {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id <= 0 {
		return usagef("the silence ID is a number (see hubctl alarm silences), got %q", arg)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	if err := api.ExpireSilence(ctx, id); err != nil {
		return fmt.Errorf("alarm unsilence: %w", err)
	}
	fmt.Fprintf(c.stdout, "Silence %d ended.\n", id)
	return nil
}
