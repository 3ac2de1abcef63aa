package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed (hub unreachable, API error, file error)
	exitUsage = 2 // the command line is wrong
)

// cli is one invocation of hubctl with its streams and environment.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	loc            *time.Location   // where times are shown
	now            func() time.Time // for "expires in …"

	g          globals
	api        *apiclient.Client // made on first use by client()
	serverFrom string            // where the server address came from, for hints
	capture    *captureTransport // the last response body, for --json
}

func newCLI(stdin io.Reader, stdout, stderr io.Writer) *cli {
	return &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, loc: time.Local, now: time.Now}
}

// globals are the flags every command accepts, anywhere on the line.
type globals struct {
	server  string
	token   string
	dataDir string
	json    bool
}

// Environment variables.
const (
	envServer  = "HUBCTL_SERVER"
	envToken   = "HUBCTL_TOKEN"
	envDataDir = "HUB_DATA_DIR"

	defaultDataDir = "./var"
)

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", "", "hub API base `URL`, e.g. http://127.0.0.1:8080 (env "+envServer+")")
	fs.StringVar(&g.token, "token", "", "admin bearer `token` (env "+envToken+")")
	fs.StringVar(&g.dataDir, "data-dir", "", "data `dir` of a hub on this machine, read when --server or --token is missing (env "+envDataDir+", default "+defaultDataDir+")")
	fs.BoolVar(&g.json, "json", false, "print the API's raw JSON response")
}

// command is one hubctl command. setup registers the command's flags on fs and
// returns the function that runs it with the positional arguments.
type command struct {
	name    string // "locker add"
	args    string // positional arguments and main flags, for usage lines
	summary string // one line for the command list
	doc     string // more, for `hubctl COMMAND --help`
	nargs   int    // exact number of positional arguments; -1: any number (the command checks)
	setup   func(fs *flag.FlagSet) runFunc
}

type runFunc func(ctx context.Context, c *cli, args []string) error

func (cmd *command) usage() string {
	if cmd.args == "" {
		return "hubctl " + cmd.name
	}
	return "hubctl " + cmd.name + " " + cmd.args
}

// usageError is a wrong command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// invocation is a parsed command line.
type invocation struct {
	cmd  *command
	fs   *flag.FlagSet // holds the command's and the global flags, parsed
	args []string      // positional arguments
	run  runFunc
	help bool // --help was asked for: print usage, run nothing
}

// parse finds the command in args and parses its flags, which may come before
// or after the positional arguments. Flags before the command words may only
// be global ones. A nil command with help set means top-level help.
func (c *cli) parse(args []string) (*invocation, error) {
	// Phase 1: skip leading global flags to find the command words.
	pre := newFlagSet("hubctl")
	var scratch globals
	scratch.register(pre)
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &invocation{help: true}, nil
		}
		return nil, usagef("%v (see hubctl --help)", err)
	}
	rest := pre.Args()
	leading := args[:len(args)-len(rest)]
	if n := len(leading); n > 0 && leading[n-1] == "--" {
		leading = leading[:n-1]
	}
	if len(rest) == 0 {
		return nil, usagef("missing command (see hubctl --help)")
	}
	if rest[0] == "help" {
		return &invocation{help: true}, nil
	}
	cmd, words, err := findCommand(rest)
	if err != nil {
		return nil, err
	}

	// Phase 2: one flag set with the global and the command's flags, parsed
	// over everything except the command words.
	fs := newFlagSet("hubctl " + cmd.name)
	c.g.register(fs)
	runner := cmd.setup(fs)
	inv := &invocation{cmd: cmd, fs: fs, run: runner}
	flagArgs := append(append([]string{}, leading...), rest[words:]...)
	if err := fs.Parse(reorder(fs, flagArgs)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			inv.help = true
			return inv, nil
		}
		return nil, usagef("%s: %v (usage: %s)", cmd.name, err, cmd.usage())
	}
	inv.args = fs.Args()
	switch {
	case len(inv.args) < cmd.nargs:
		return nil, usagef("%s: missing %s (usage: %s)", cmd.name, strings.Fields(cmd.args)[len(inv.args)], cmd.usage())
	case cmd.nargs >= 0 && len(inv.args) > cmd.nargs:
		return nil, usagef("%s: unexpected argument %q (usage: %s)", cmd.name, inv.args[cmd.nargs], cmd.usage())
	}
	return inv, nil
}

// findCommand matches the command words at the start of args (the longest
// command that matches: "ota rollout start" has three) and returns the
// command and how many words it took.
func findCommand(args []string) (*command, int, error) {
	var group, sub []string
	var best *command
	for i := range commands {
		cmd := &commands[i]
		words := strings.Fields(cmd.name)
		if words[0] != args[0] {
			continue
		}
		if len(words) == 1 {
			return cmd, 1, nil
		}
		if !slices.Contains(group, words[1]) {
			group = append(group, words[1])
		}
		if len(words) == 3 && len(args) > 1 && args[1] == words[1] {
			sub = append(sub, words[2])
		}
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) && (best == nil || len(words) > len(strings.Fields(best.name))) {
			best = cmd
		}
	}
	switch {
	case best != nil:
		return best, len(strings.Fields(best.name)), nil
	case group == nil:
		return nil, 0, usagef("unknown command %q (commands: %s; see hubctl --help)", args[0], strings.Join(topWords(), ", "))
	case sub != nil && (len(args) < 3 || strings.HasPrefix(args[2], "-")):
		return nil, 0, usagef("%s %s: missing subcommand (%s)", args[0], args[1], strings.Join(sub, ", "))
	case sub != nil:
		return nil, 0, usagef("%s %s: unknown subcommand %q (%s)", args[0], args[1], args[2], strings.Join(sub, ", "))
	case len(args) < 2 || strings.HasPrefix(args[1], "-"):
		return nil, 0, usagef("%s: missing subcommand (%s)", args[0], strings.Join(group, ", "))
	default:
		return nil, 0, usagef("%s: unknown subcommand %q (%s)", args[0], args[1], strings.Join(group, ", "))
	}
}

// topWords are the first words of the commands, in table order, once each.
func topWords() []string {
	var out []string
	seen := map[string]bool{}
	for _, cmd := range commands {
		w := strings.Fields(cmd.name)[0]
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run, help by printHelp
	fs.Usage = func() {}
	return fs
}

// reorder moves the flags in args (with their values) before the positional
// arguments, so that the flag package, which stops at the first positional
// argument, sees them all. Everything after "--" stays positional, and so does
// a lone "-".
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil || isBoolFlag(f) {
			continue // unknown flags are left for the flag package to refuse
		}
		if i+1 == len(args) {
			return flags // its value is missing: let the flag package say so
		}
		i++
		flags = append(flags, args[i])
	}
	return append(append(flags, "--"), pos...)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// run parses args, runs the command and returns the exit code. Errors are
// printed as one line on stderr.
func (c *cli) run(ctx context.Context, args []string) int {
	inv, err := c.parse(args)
	if err != nil {
		return c.fail(err)
	}
	if inv.help {
		c.printHelp(inv.cmd)
		return exitOK
	}
	if err := inv.run(ctx, c, inv.args); err != nil {
		return c.fail(err)
	}
	return exitOK
}

func (c *cli) fail(err error) int {
	fmt.Fprintln(c.stderr, "hubctl: "+oneLine(c.describe(err)))
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFail
}

// describe turns an error into what a user should read, with a hint where the
// cause is a common one.
func (c *cli) describe(err error) string {
	var apiErr *apiclient.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
		return err.Error() + ": check --token/" + envToken + " or the admin.token in the hub's data dir"
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden:
		return err.Error() + ": this token may not do that; use an admin token"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return err.Error() + ": the hub did not answer in time"
	case isConnRefused(err) && strings.HasSuffix(c.serverFrom, apiclient.HubInfoFile):
		return fmt.Sprintf("cannot reach the hub at %s, named in %s (connection refused): is it running? Start it with `make run`, or pass --server/--token", c.g.server, c.serverFrom)
	case isConnRefused(err):
		return fmt.Sprintf("cannot reach the hub at %s, from %s (connection refused): is the address right and the hub running?", c.g.server, c.serverFrom)
	}
	return err.Error()
}

// oneLine folds a message onto a single line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (c *cli) printHelp(cmd *command) {
	w := c.stdout
	if cmd == nil {
		fmt.Fprint(w, "hubctl is the command-line client of a lockerhub hub.\n\n")
		fmt.Fprint(w, "Usage:\n  hubctl COMMAND [ARGS] [FLAGS]\n\nCommands:\n")
		tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		for _, cmd := range commands {
			fmt.Fprintf(tw, "  %s %s\t%s\n", cmd.name, cmd.args, cmd.summary)
		}
		tw.Flush()
		fmt.Fprint(w, "\nGlobal flags (accepted anywhere on the line):\n")
		fs := newFlagSet("hubctl")
		new(globals).register(fs)
		printFlags(w, fs)
		fmt.Fprint(w, "\nWithout --server and --token, hubctl reads hub.json and admin.token from the data dir\n"+
			"of a hub on this machine (start one with `make run`).\n"+
			"Run `hubctl COMMAND --help` for the flags of a command.\n")
		return
	}
	doc := cmd.doc
	if doc == "" {
		doc = strings.ToUpper(cmd.summary[:1]) + cmd.summary[1:] + "."
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", cmd.usage(), doc)
	global := newFlagSet("hubctl")
	new(globals).register(global)
	fs := newFlagSet("hubctl " + cmd.name)
	cmd.setup(fs)
	if hasFlags(fs) {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	fmt.Fprint(w, "\nGlobal flags:\n")
	printFlags(w, global)
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// printFlags lists the flags of fs with GNU-style double dashes.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		arg := "--" + f.Name
		if name != "" {
			arg += " " + strings.ToUpper(name)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", arg, usage)
	})
	tw.Flush()
}
