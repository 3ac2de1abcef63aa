package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Commands to lockers (`hubctl cell open`, `hubctl command list/show`),
// listed before `api`.
var lockerCommands = []command{
	{
		name: "cell open", args: "LOCKER CELL [--no-wait] [--wait 30s] [--key K]", nargs: 2,
		summary: "open a cell and wait until its door sensor confirms it",
		doc: "Sends cell.open to the locker. The command is stored first; a locker that is offline gets it\n" +
			"when it reconnects, if that is within its validity (30 s). By default hubctl waits for the final\n" +
			"state: succeeded once the door sensor reports the door open; failed (refused by the locker,\n" +
			"e.g. jammed), expired (never executed) or unconfirmed (no door confirmation) exit with 1.\n" +
			"--no-wait prints the command at once (pending or sent). --key makes a repeat safe: the same\n" +
			"key returns the first command, never a second opening.",
		setup: func(fs *flag.FlagSet) runFunc {
			noWait := fs.Bool("no-wait", false, "do not wait for the final state")
			wait := fs.Duration("wait", 30*time.Second, "wait at most this `long` for the final state")
			key := fs.String("key", "", "idempotency `key`: a repeat with it returns the first command")
			return func(ctx context.Context, c *cli, args []string) error {
				if err := checkID(args[0]); err != nil {
					return err
				}
				w := *wait
				if *noWait {
					w = 0
				}
				return c.cellOpen(ctx, args[0], args[1], *key, w)
			}
		},
	},
	{
		name: "command list", args: "[--locker ID] [--state S] [--limit N]", nargs: 0,
		summary: "list commands sent to lockers, newest first",
		doc:     "States: pending, sent, succeeded, failed, expired, unconfirmed.",
		setup: func(fs *flag.FlagSet) runFunc {
			var f apiclient.CommandFilter
			fs.StringVar(&f.Locker, "locker", "", "only the commands of locker `ID`")
			fs.StringVar(&f.State, "state", "", "only commands in `state`")
			fs.IntVar(&f.Limit, "limit", 50, "at most `N` commands")
			return func(ctx context.Context, c *cli, args []string) error { return c.commandList(ctx, f) }
		},
	},
	{
		name: "command show", args: "ID", nargs: 1,
		summary: "show one command: state, attempts, answer, door confirmation",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.commandShow(ctx, args[0]) }
		},
	},
}

func init() {
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append(append([]command{}, lockerCommands...), commands[i:]...)...)
			return
		}
	}
	commands = append(commands, lockerCommands...)
}

// errCommandNotDone: the command ended in a state other than succeeded.
var errCommandNotDone = errors.New("the command did not succeed")

func (c *cli) cellOpen(ctx context.Context, locker, cell, key string, wait time.Duration) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+10*time.Second)
		defer cancel()
	}
	cmd, err := api.OpenCell(ctx, locker, cell, key, min(wait, 60*time.Second))
	if err != nil {
		return fmt.Errorf("cell open: %w", err)
	}
	// Waits beyond the API's 60 s go on with GET ?wait.
	for deadline := time.Now().Add(wait); wait > 0 && !cmd.Final() && time.Until(deadline) > time.Second; {
		if cmd, err = api.Command(ctx, cmd.ID, min(time.Until(deadline), 60*time.Second)); err != nil {
			return fmt.Errorf("cell open: %w", err)
		}
	}
	if c.g.json {
		if err := c.printRaw(); err != nil {
			return err
		}
	} else if err := writeCommand(c.stdout, cmd, c.loc); err != nil {
		return err
	}
	if wait > 0 && !cmd.Final() {
		return fmt.Errorf("cell open: still %s after %s (hubctl command show %s)", cmd.State, wait, cmd.ID)
	}
	if cmd.Final() && cmd.State != "succeeded" {
		return fmt.Errorf("cell open: %s: %w", cmd.State, errCommandNotDone)
	}
	return nil
}

func (c *cli) commandList(ctx context.Context, f apiclient.CommandFilter) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	cmds, err := api.Commands(ctx, f)
	if err != nil {
		return fmt.Errorf("command list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if len(cmds) == 0 {
		fmt.Fprintln(c.stderr, "No commands match.")
		return nil
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tLOCKER\tMETHOD\tPARAMS\tSTATE\tCREATED\tBY\tATTEMPTS\tERROR")
	for _, m := range cmds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, m.LockerID, m.Method, orDash(compactParams(m.Params)), m.State,
			fmtTime(m.CreatedAt, c.loc), orDash(m.CreatedBy), m.Attempts, orDash(errText(m.Error)))
	}
	return tw.Flush()
}

func (c *cli) commandShow(ctx context.Context, id string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	cmd, err := api.Command(ctx, id, 0)
	if err != nil {
		return fmt.Errorf("command show: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	return writeCommand(c.stdout, cmd, c.loc)
}

func compactParams(p []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, p) == nil {
		p = b.Bytes()
	}
	s := string(p)
	if s == "{}" || s == "null" {
		return ""
	}
	return s
}

func errText(e *apiclient.CommandError) string {
	if e == nil {
		return ""
	}
	return e.Code + ": " + e.Message
}

func writeCommand(w io.Writer, m apiclient.Command, loc *time.Location) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Command:\t%s\n", m.ID)
	fmt.Fprintf(tw, "Locker:\t%s\n", m.LockerID)
	fmt.Fprintf(tw, "Method:\t%s %s\n", m.Method, compactParams(m.Params))
	state := m.State
	if m.Replayed {
		state += " (idempotency key used before: this is the first command)"
	}
	fmt.Fprintf(tw, "State:\t%s\n", state)
	if m.Error != nil {
		fmt.Fprintf(tw, "Error:\t%s\n", errText(m.Error))
	}
	if len(m.Result) > 0 {
		fmt.Fprintf(tw, "Result:\t%s\n", compactParams(m.Result))
	}
	fmt.Fprintf(tw, "Created:\t%s by %s\n", fmtTime(m.CreatedAt, loc), orDash(m.CreatedBy))
	if m.IdempotencyKey != "" {
		fmt.Fprintf(tw, "Key:\t%s\n", m.IdempotencyKey)
	}
	fmt.Fprintf(tw, "Valid until:\t%s\n", fmtTime(m.NotAfter, loc))
	fmt.Fprintf(tw, "Sent:\t%s (%d attempts)\n", fmtTimePtr(m.SentAt, loc), m.Attempts)
	fmt.Fprintf(tw, "Answered:\t%s\n", fmtTimePtr(m.AnsweredAt, loc))
	if m.Method == "cell.open" {
		fmt.Fprintf(tw, "Door open:\t%s\n", fmtTimePtr(m.ConfirmedAt, loc))
	}
	fmt.Fprintf(tw, "Finished:\t%s\n", fmtTimePtr(m.FinishedAt, loc))
	return tw.Flush()
}
