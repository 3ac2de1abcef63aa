package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Firmware updates: artifacts and staged rollouts (docs/ota.md).
var otaCommands = []command{
	{
		name: "ota upload", args: "FILE --version V [--model M] [--notes TEXT]", nargs: 1,
		summary: "upload a firmware artifact: the hub stores it, hashes and signs it",
		setup: func(fs *flag.FlagSet) runFunc {
			version := fs.String("version", "", "the firmware `version` the file installs (required)")
			models := fs.String("model", "", "compatible locker `models`, comma-separated (default: every model)")
			notes := fs.String("notes", "", "release `notes`")
			return func(ctx context.Context, c *cli, args []string) error {
				if *version == "" {
					return usagef("ota upload: --version is required")
				}
				return c.otaUpload(ctx, args[0], *version, commaList(*models), *notes)
			}
		},
	},
	{
		name: "ota artifacts", args: "", nargs: 0,
		summary: "list the firmware artifacts",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.otaArtifacts(ctx) }
		},
	},
	{
		name: "ota rollout create", args: "--version V [targets] [policy] [--start]", nargs: 0,
		summary: "create a rollout of an artifact to a set of lockers, in waves",
		doc: "Targets (all given must match; none: every enabled locker): --segments, --models, --from-versions, --lockers.\n" +
			"Lockers already on the version, of a model the artifact is not for, or updating in another rollout are left out.\n" +
			"Example: hubctl ota rollout create --version 1.5.0 --segments berlin --canary 5 --percent 20 --soak 30m --window 01:00-05:00 --start",
		setup: func(fs *flag.FlagSet) runFunc {
			var n apiclient.NewRollout
			var segments, models, versions, lockers, window string
			fs.StringVar(&n.Version, "version", "", "the artifact's `version`")
			fs.Int64Var(&n.ArtifactID, "artifact", 0, "the artifact's `id` (instead of --version)")
			fs.StringVar(&n.Name, "name", "", "a `name` for the rollout")
			fs.StringVar(&segments, "segments", "", "lockers in any of these `segments` (comma-separated)")
			fs.StringVar(&models, "models", "", "lockers of these `models`")
			fs.StringVar(&versions, "from-versions", "", "lockers currently on these firmware `versions`")
			fs.StringVar(&lockers, "lockers", "", "only these locker `IDs`")
			p := &n.Policy
			fs.IntVar(&p.Canary, "canary", 0, "lockers in the first wave (hub default 10)")
			fs.StringVar(&p.Growth, "growth", "", "later waves: percent (default) or exponential")
			fs.Float64Var(&p.Percent, "percent", 0, "percent growth: each wave is this `%` of the targets (default 25)")
			fs.Float64Var(&p.Factor, "factor", 0, "exponential growth: each wave is `F` times the previous (default 2)")
			fs.StringVar(&p.Order, "order", "", "wave assignment: random (default) or id")
			fs.Float64Var(&p.SuccessPct, "success-pct", 0, "installed `%` of a wave to go on (default 95)")
			fs.Float64Var(&p.FailurePct, "failure-pct", 0, "failed `%` of a wave that pauses the rollout (default 20)")
			fs.Float64Var(&p.AbortPct, "abort-pct", 0, "failed `%` of the started waves that aborts it (default 50)")
			fs.BoolVar(&p.Approval, "approval", false, "wait for `hubctl ota rollout approve` after each wave")
			fs.StringVar(&p.Soak, "soak", "", "health gate: watch each wave this `long` before the next (e.g. 30m; default none)")
			fs.StringVar(&window, "window", "", "maintenance window in the lockers' local time, `HH:MM-HH:MM`")
			fs.IntVar(&p.MaxInFlight, "max-in-flight", 0, "lockers updating at once (default no bound)")
			fs.BoolVar(&n.Start, "start", false, "start it at once")
			return func(ctx context.Context, c *cli, args []string) error {
				if n.Version == "" && n.ArtifactID == 0 {
					return usagef("ota rollout create: give --version or --artifact")
				}
				n.Targets = apiclient.RolloutTargets{Segments: commaList(segments), Models: commaList(models), Versions: commaList(versions), Lockers: commaList(lockers)}
				if window != "" {
					start, end, ok := strings.Cut(window, "-")
					if !ok {
						return usagef("ota rollout create: --window %q: want HH:MM-HH:MM", window)
					}
					p.Window = &apiclient.MaintenanceWindow{Start: start, End: end}
				}
				return c.otaCreate(ctx, n)
			}
		},
	},
	{
		name: "ota rollout list", args: "", nargs: 0,
		summary: "list the rollouts, newest first",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.otaList(ctx) }
		},
	},
	{
		name: "ota rollout status", args: "ID [--watch]", nargs: 1,
		summary: "a rollout's waves, lockers by state and failures; --watch draws live progress",
		setup: func(fs *flag.FlagSet) runFunc {
			watch := fs.Bool("watch", false, "redraw a progress bar until the rollout ends (Ctrl-C stops watching)")
			every := fs.Duration("every", time.Second, "how often --watch asks the hub")
			return func(ctx context.Context, c *cli, args []string) error {
				id, err := rolloutID(args[0])
				if err != nil {
					return err
				}
				if *watch {
					return c.otaWatch(ctx, id, *every)
				}
				return c.otaStatus(ctx, id)
			}
		},
	},
	{
		name: "ota rollout lockers", args: "ID [--state S] [--wave N]", nargs: 1,
		summary: "the lockers of a rollout with their update state and reasons",
		setup: func(fs *flag.FlagSet) runFunc {
			state := fs.String("state", "", "only lockers in `state` (queued, notified, downloading, …, installed, failed)")
			wave := fs.Int("wave", 0, "only lockers of wave `N`")
			return func(ctx context.Context, c *cli, args []string) error {
				id, err := rolloutID(args[0])
				if err != nil {
					return err
				}
				return c.otaLockers(ctx, id, *state, *wave)
			}
		},
	},
}

func init() {
	for _, a := range []struct{ name, summary string }{
		{"start", "start a draft rollout: pick the targets, make the waves, begin with the canary"},
		{"pause", "pause a rollout: no new updates start (those under way finish)"},
		{"resume", "resume a paused rollout"},
		{"cancel", "cancel a rollout: lockers not yet updated are left alone"},
		{"approve", "let a rollout waiting for approval start its next wave"},
		{"rollback", "roll back: a new rollout of the previous version to the lockers this one updated"},
	} {
		action := a.name
		args := "ID"
		if action == "pause" {
			args = "ID [--reason TEXT]"
		}
		otaCommands = append(otaCommands, command{name: "ota rollout " + action, args: args, nargs: 1, summary: a.summary,
			setup: func(fs *flag.FlagSet) runFunc {
				reason := ""
				if action == "pause" {
					fs.StringVar(&reason, "reason", "", "why (shown with the rollout)")
				}
				return func(ctx context.Context, c *cli, args []string) error {
					id, err := rolloutID(args[0])
					if err != nil {
						return err
					}
					return c.otaAction(ctx, id, action, reason)
				}
			}})
	}
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append(append([]command{}, otaCommands...), commands[i:]...)...)
			return
		}
	}
	commands = append(commands, otaCommands...)
}

func rolloutID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("rollout ID must be a positive number, got %q", s)
	}
	return id, nil
}

func (c *cli) otaUpload(ctx context.Context, path, version string, models []string, notes string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	a, err := api.UploadArtifact(ctx, version, models, notes, f)
	if err != nil {
		return fmt.Errorf("ota upload: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Artifact %d: version %s, %d bytes, sha256 %s, models %s.\n", a.ID, a.Version, a.Size, a.SHA256, orList(a.Models))
	return nil
}

func (c *cli) otaArtifacts(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	list, err := api.Artifacts(ctx)
	if err != nil {
		return fmt.Errorf("ota artifacts: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tVERSION\tSIZE\tMODELS\tSHA256\tUPLOADED\tBY")
	for _, a := range list {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s…\t%s\t%s\n", a.ID, a.Version, a.Size, orList(a.Models), a.SHA256[:16], fmtTime(a.CreatedAt, c.loc), orDash(a.CreatedBy))
	}
	return tw.Flush()
}

func (c *cli) otaCreate(ctx context.Context, n apiclient.NewRollout) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	r, err := api.CreateRollout(ctx, n)
	if err != nil {
		return fmt.Errorf("ota rollout create: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Rollout %d (%s): %s.\n", r.ID, r.Name, r.State)
	if r.State == "draft" {
		fmt.Fprintf(c.stdout, "Start it with: hubctl ota rollout start %d\n", r.ID)
	}
	return nil
}

func (c *cli) otaList(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	list, err := api.Rollouts(ctx)
	if err != nil {
		return fmt.Errorf("ota rollout list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tNAME\tVERSION\tSTATE\tWAVE\tCREATED\tREASON")
	for _, r := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Name, r.Version, r.State, r.CurrentWave, fmtTime(r.CreatedAt, c.loc), orDash(r.Reason))
	}
	return tw.Flush()
}

func (c *cli) otaAction(ctx context.Context, id int64, action, reason string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	r, err := api.RolloutAction(ctx, id, action, reason)
	if err != nil {
		return fmt.Errorf("ota rollout %s: %w", action, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if action == "rollback" {
		fmt.Fprintf(c.stdout, "Rollout %d cancelled; rollback rollout %d (%s) is %s.\n", id, r.ID, r.Name, r.State)
		return nil
	}
	fmt.Fprintf(c.stdout, "Rollout %d: %s", r.ID, r.State)
	if r.Reason != "" {
		fmt.Fprintf(c.stdout, " (%s)", r.Reason)
	}
	fmt.Fprintln(c.stdout, ".")
	return nil
}

// stateOrder is the order states are shown in.
var stateOrder = []string{"pending", "queued", "notified", "downloading", "downloaded", "verified", "installing", "installed", "failed", "cancelled"}

func countsLine(counts map[string]int) string {
	var parts []string
	for _, s := range stateOrder {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
		}
	}
	return orDash(strings.Join(parts, ", "))
}

func finalRollout(state string) bool {
	return state == "completed" || state == "cancelled" || state == "aborted"
}

func (c *cli) otaStatus(ctx context.Context, id int64) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	s, err := api.RolloutStatus(ctx, id)
	if err != nil {
		return fmt.Errorf("ota rollout status: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	writeRolloutStatus(c.stdout, s)
	return nil
}

func writeRolloutStatus(w io.Writer, s apiclient.RolloutStatus) {
	fmt.Fprintf(w, "Rollout %d (%s): %s, version %s, wave %d of %d, %d lockers\n", s.ID, s.Name, s.State, s.Version, s.CurrentWave, len(s.Waves), s.Total)
	if s.Reason != "" {
		fmt.Fprintf(w, "Reason: %s\n", s.Reason)
	}
	fmt.Fprintf(w, "%s\n", progressBar(s, 40))
	tw := newTable(w)
	fmt.Fprintln(tw, "WAVE\tSIZE\tSTATE\tLOCKERS")
	for _, wv := range s.Waves {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", wv.N, wv.Size, wv.State, countsLine(wv.Counts))
	}
	_ = tw.Flush()
	if len(s.Failures) > 0 {
		fmt.Fprintln(w, "Failures:")
		reasons := make([]string, 0, len(s.Failures))
		for r := range s.Failures {
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(i, j int) bool { return s.Failures[reasons[i]] > s.Failures[reasons[j]] })
		for _, r := range reasons {
			fmt.Fprintf(w, "  %4d  %s\n", s.Failures[r], r)
		}
	}
}

// progressBar is "[#####-----....] 40/200 installed, 2 failed, 10 under way".
func progressBar(s apiclient.RolloutStatus, width int) string {
	total := max(s.Total, 1)
	done, failed := s.Counts["installed"], s.Counts["failed"]+s.Counts["cancelled"]
	busy := 0
	for _, st := range []string{"notified", "downloading", "downloaded", "verified", "installing"} {
		busy += s.Counts[st]
	}
	nd, nf := done*width/total, failed*width/total
	nb := min(busy*width/total, width-nd-nf)
	bar := strings.Repeat("#", nd) + strings.Repeat("x", nf) + strings.Repeat("-", nb) + strings.Repeat(".", max(width-nd-nf-nb, 0))
	return fmt.Sprintf("[%s] %d/%d installed, %d failed, %d under way (%d%%)", bar, done, s.Total, s.Counts["failed"], busy, done*100/total)
}

// otaWatch redraws one progress line (\r) until the rollout ends or stops
// (paused, waiting for approval), then prints the full status.
func (c *cli) otaWatch(ctx context.Context, id int64, every time.Duration) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	last := ""
	for {
		s, err := api.RolloutStatus(ctx, id)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				fmt.Fprintln(c.stdout)
				return nil
			}
			return fmt.Errorf("ota rollout status: %w", err)
		}
		line := fmt.Sprintf("\r%s  %s wave %d/%d", progressBar(s, 30), s.State, s.CurrentWave, len(s.Waves))
		if pad := len(last) - len(line); pad > 0 {
			line += strings.Repeat(" ", pad)
		}
		fmt.Fprint(c.stdout, line)
		last = line
		waiting := len(s.Waves) > 0 && s.CurrentWave >= 1 && s.CurrentWave <= len(s.Waves) && s.Waves[s.CurrentWave-1].State == "awaiting_approval"
		if finalRollout(s.State) || s.State == "paused" || s.State == "draft" || waiting {
			fmt.Fprint(c.stdout, "\n\n")
			writeRolloutStatus(c.stdout, s)
			return nil
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(c.stdout)
			return nil
		case <-time.After(every):
		}
	}
}

func (c *cli) otaLockers(ctx context.Context, id int64, state string, wave int) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	list, err := api.RolloutLockers(ctx, id, state, wave)
	if err != nil {
		return fmt.Errorf("ota rollout lockers: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "LOCKER\tWAVE\tSTATE\tATTEMPTS\tFROM\tSINCE\tREASON")
	for _, l := range list {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", l.LockerID, l.Wave, l.State, l.Attempts, orDash(l.PreviousVersion), fmtTime(l.StateAt, c.loc), orDash(l.Reason))
	}
	return tw.Flush()
}
