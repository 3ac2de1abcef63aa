package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/lockerhub/lockerhub/apiclient"
)

// User and API client commands, listed before `api`.
var accessCommands = []command{
	{
		name: "user add", args: "NAME --role R [--carrier C] [--password-stdin]", nargs: 1,
		summary: "add a dashboard user",
		doc: "Adds a user with a role: admin, technician, courier, oncall or viewer. A courier needs\n" +
			"--carrier (the transport company whose lockers it may use); with any other role --carrier\n" +
			"limits the user to that carrier's lockers. The password: read from the first line of\n" +
			"standard input with --password-stdin, asked for (twice, not shown) on a terminal, or else\n" +
			"made up by the hub and printed once. Passwords are 12 to 256 characters.",
		setup: func(fs *flag.FlagSet) runFunc {
			role := fs.String("role", "", "the user's `role`: admin, technician, courier, oncall or viewer")
			carrier := fs.String("carrier", "", "limit the user to the lockers of `carrier`")
			stdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.userAdd(ctx, args[0], *role, *carrier, *stdin)
			}
		},
	},
	{
		name: "user list", nargs: 0,
		summary: "list the dashboard users",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.userList(ctx) }
		},
	},
	{
		name: "user disable", args: "NAME", nargs: 1,
		summary: "disable a user, ending its sessions at once",
		doc:     "Stops the user from logging in, ends its sessions and closes its live streams at once.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.userUpdate(ctx, "user disable", args[0], apiclient.UserPatch{Disabled: boolPtr(true)})
			}
		},
	},
	{
		name: "user enable", args: "NAME", nargs: 1,
		summary: "let a disabled user log in again",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.userUpdate(ctx, "user enable", args[0], apiclient.UserPatch{Disabled: boolPtr(false)})
			}
		},
	},
	{
		name: "user set", args: "NAME [--role R] [--carrier C]", nargs: 1,
		summary: "change a user's role or carrier",
		doc:     "Changes what the flags say; --carrier \"\" gives the user the whole fleet (not for couriers).",
		setup: func(fs *flag.FlagSet) runFunc {
			role := fs.String("role", "", "the new `role`")
			carrier := fs.String("carrier", "", "the new `carrier` (\"\" for the whole fleet)")
			return func(ctx context.Context, c *cli, args []string) error {
				var p apiclient.UserPatch
				fs.Visit(func(f *flag.Flag) {
					switch f.Name {
					case "role":
						p.Role = role
					case "carrier":
						p.Carrier = carrier
					}
				})
				if p.Role == nil && p.Carrier == nil {
					return usagef("user set: nothing to change (--role R, --carrier C)")
				}
				return c.userUpdate(ctx, "user set", args[0], p)
			}
		},
	},
	{
		name: "user password", args: "NAME [--password-stdin]", nargs: 1,
		summary: "reset a user's password, ending its sessions",
		doc:     "Sets the password from standard input (--password-stdin), asks for it on a terminal, or has the hub make one up and prints it once.",
		setup: func(fs *flag.FlagSet) runFunc {
			stdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.userPassword(ctx, args[0], *stdin)
			}
		},
	},
	{
		name: "client add", args: "NAME --carrier C --scope S[,S…]", nargs: 1,
		summary: "add an API client for a delivery service, printing its token once",
		doc: "Adds an API client of a carrier (a delivery service, marketplace or shop) and prints its bearer\n" +
			"token once; the hub keeps only a hash of it. Scopes: lockers:read, telemetry:read,\n" +
			"commands:read, commands:write, parcels:read, parcels:write. The client sees only the\n" +
			"carrier's lockers.",
		setup: func(fs *flag.FlagSet) runFunc {
			carrier := fs.String("carrier", "", "the `carrier` whose lockers the client may use")
			scope := fs.String("scope", "", "what the client may do: comma-separated `scopes`")
			hours := fs.Int("reservation-hours", 0, "the client's reservations expire when not dropped off within `hours` (0: the hub's --reservation-time)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.clientAdd(ctx, args[0], *carrier, *scope, *hours)
			}
		},
	},
	{
		name: "client set", args: "NAME --reservation-hours N", nargs: 1,
		summary: "change an API client's settings",
		doc: "Sets how long the client's reservations wait for the drop-off: a reservation not dropped off\n" +
			"within N hours expires, frees its cell and the client gets the webhook parcel.reservation_expired.\n" +
			"0: the hub's default (--reservation-time, 48h). Applies to reservations made from now on.",
		setup: func(fs *flag.FlagSet) runFunc {
			hours := fs.Int("reservation-hours", -1, "reservation deadline in `hours` (0: the hub's default)")
			return func(ctx context.Context, c *cli, args []string) error {
				if *hours < 0 {
					return usagef("client set: nothing to change (--reservation-hours N)")
				}
				return c.clientSet(ctx, args[0], *hours)
			}
		},
	},
	{
		name: "client deliveries", args: "NAME", nargs: 1,
		summary: "an API client's webhook delivery log: every attempt",
		doc: "Lists the client's webhooks, newest first, each with every attempt to deliver it: when, the\n" +
			"HTTP status or error, how long it took and when the next try is due.",
		setup: func(fs *flag.FlagSet) runFunc {
			var f apiclient.DeliveryFilter
			fs.StringVar(&f.State, "state", "", "only deliveries in `state`: pending, sent, failed")
			fs.StringVar(&f.Event, "event", "", "only webhooks of `type`, e.g. parcel.deposited")
			fs.StringVar(&f.Parcel, "parcel", "", "only webhooks about parcel `id`")
			fs.StringVar(&f.Since, "since", "", "only webhooks since `when`: RFC 3339 or a duration ago (24h)")
			fs.IntVar(&f.Limit, "limit", 0, "at most `n` deliveries (default 50, at most 500)")
			return func(ctx context.Context, c *cli, args []string) error { return c.clientDeliveries(ctx, args[0], f) }
		},
	},
	{
		name: "client replay", args: "NAME DELIVERY", nargs: 2,
		summary: "send one of an API client's webhooks again, with the same id",
		doc: "Sends a delivered or failed webhook again with its id unchanged (the receiver deduplicates on\n" +
			"it), signed anew. Audited. A delivery still being retried is refused.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.clientReplay(ctx, args[0], args[1]) }
		},
	},
	{
		name: "client list", nargs: 0,
		summary: "list the API clients",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.clientList(ctx) }
		},
	},
	{
		name: "client revoke", args: "NAME", nargs: 1,
		summary: "revoke an API client's token",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.clientRevoke(ctx, args[0]) }
		},
	},
	{
		name: "token add", args: "NAME", nargs: 1,
		summary: "make another admin bearer token",
		doc: "Makes an admin token named NAME (what it is for, e.g. a deploy job) and prints it\n" +
			"once; the hub keeps only a hash of it. Give each tool its own, so that one can be\n" +
			"revoked without the others.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.tokenAdd(ctx, args[0]) }
		},
	},
	{
		name: "token list", nargs: 0,
		summary: "list the admin bearer tokens",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.tokenList(ctx) }
		},
	},
	{
		name: "token revoke", args: "ID", nargs: 1,
		summary: "revoke an admin bearer token",
		doc: "Revokes the token with that ID (see token list) for good: its next request is refused.\n" +
			"Revoking the data dir's admin.token: the hub makes a new one at its next start and\n" +
			"prints it once (hubctl on the hub's machine then needs that restart, or another token).",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.tokenRevoke(ctx, args[0]) }
		},
	},
}

func init() {
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append(append([]command{}, accessCommands...), commands[i:]...)...)
			return
		}
	}
	commands = append(commands, accessCommands...)
}

func boolPtr(b bool) *bool { return &b }

// readPassword gets a password: the first line of stdin with fromStdin, a
// prompt on a terminal, or "" (the hub makes one up).
func (c *cli) readPassword(fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(c.stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", usagef("--password-stdin: standard input holds no password")
		}
		return pw, nil
	}
	f, ok := c.stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return "", nil
	}
	fmt.Fprint(c.stderr, "Password (empty: let the hub make one up): ")
	pw, err := readNoEcho(f)
	fmt.Fprintln(c.stderr)
	if err != nil || pw == "" {
		return "", err
	}
	fmt.Fprint(c.stderr, "Again: ")
	again, err := readNoEcho(f)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the passwords differ")
	}
	return pw, nil
}

func (c *cli) userAdd(ctx context.Context, name, role, carrier string, fromStdin bool) error {
	if role == "" {
		return usagef("user add: --role is required (admin, technician, courier, oncall, viewer)")
	}
	pw, err := c.readPassword(fromStdin)
	if err != nil {
		return err
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	u, err := api.CreateUser(ctx, apiclient.NewUser{Username: name, Role: role, Carrier: carrier, Password: pw})
	if err != nil {
		return fmt.Errorf("user add %s: %w", name, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "User %s added (%s).\n", u.Username, userScope(u))
	if u.Password != "" {
		fmt.Fprintf(c.stdout, "Password: %s\n(shown this once; hand it over safely)\n", u.Password)
	}
	return nil
}

func userScope(u apiclient.User) string {
	if u.Carrier == "" {
		return u.Role + ", whole fleet"
	}
	return u.Role + ", lockers of " + u.Carrier
}

func (c *cli) userList(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	us, err := api.Users(ctx)
	if err != nil {
		return fmt.Errorf("user list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "USER\tROLE\tCARRIER\tCREATED\tDISABLED")
	for _, u := range us {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Username, u.Role, orDash(u.Carrier), fmtTime(u.CreatedAt, c.loc), fmtTimePtr(u.DisabledAt, c.loc))
	}
	return tw.Flush()
}

func (c *cli) userUpdate(ctx context.Context, what, name string, p apiclient.UserPatch) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	u, err := api.UpdateUser(ctx, name, p)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, name, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	switch {
	case u.DisabledAt != nil:
		fmt.Fprintf(c.stdout, "User %s is disabled; its sessions have ended.\n", u.Username)
	default:
		fmt.Fprintf(c.stdout, "User %s: %s.\n", u.Username, userScope(u))
	}
	return nil
}

func (c *cli) userPassword(ctx context.Context, name string, fromStdin bool) error {
	pw, err := c.readPassword(fromStdin)
	if err != nil {
		return err
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	u, err := api.ResetPassword(ctx, name, pw)
	if err != nil {
		return fmt.Errorf("user password %s: %w", name, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Password of %s set; its sessions have ended.\n", u.Username)
	if u.Password != "" {
		fmt.Fprintf(c.stdout, "Password: %s\n(shown this once)\n", u.Password)
	}
	return nil
}

func (c *cli) clientAdd(ctx context.Context, name, carrier, scope string, hours int) error {
	if carrier == "" {
		return usagef("client add: --carrier is required")
	}
	if scope == "" {
		return usagef("client add: --scope is required, e.g. --scope lockers:read,parcels:write")
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	cl, err := api.AddAPIClient(ctx, apiclient.NewAPIClient{Name: name, Carrier: carrier, Scopes: commaList(scope), ReservationHours: hours})
	if err != nil {
		return fmt.Errorf("client add %s: %w", name, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "API client %s added for the lockers of %s (%s).\n", cl.Name, cl.Carrier, strings.Join(cl.Scopes, ", "))
	fmt.Fprintf(c.stdout, "Token: %s\n(shown this once; the client sends it as \"Authorization: Bearer <token>\")\n", cl.Token)
	return nil
}

func (c *cli) clientList(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	cs, err := api.APIClients(ctx)
	if err != nil {
		return fmt.Errorf("client list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "CLIENT\tCARRIER\tSCOPES\tCREATED\tLAST USED\tREVOKED\tRESERVATION")
	for _, cl := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cl.Name, cl.Carrier, strings.Join(cl.Scopes, ","), fmtTime(cl.CreatedAt, c.loc),
			fmtTimePtr(cl.LastUsedAt, c.loc), fmtTimePtr(cl.RevokedAt, c.loc), reservation(cl.ReservationHours))
	}
	return tw.Flush()
}

func (c *cli) clientRevoke(ctx context.Context, name string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	cl, err := api.RevokeAPIClient(ctx, name)
	if err != nil {
		return fmt.Errorf("client revoke %s: %w", name, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "API client %s revoked; its token is refused from now on.\n", cl.Name)
	return nil
}

// reservation shows a client's reservation deadline.
func reservation(hours int) string {
	if hours == 0 {
		return "default"
	}
	return fmt.Sprintf("%dh", hours)
}

func (c *cli) clientSet(ctx context.Context, name string, hours int) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	cl, err := api.SetClientReservation(ctx, name, hours)
	if err != nil {
		return fmt.Errorf("client set %s: %w", name, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	after := reservation(cl.ReservationHours)
	if cl.ReservationHours == 0 {
		after = "the hub's default (--reservation-time)"
	}
	fmt.Fprintf(c.stdout, "API client %s: reservations expire after %s.\n", cl.Name, after)
	return nil
}

func (c *cli) clientDeliveries(ctx context.Context, name string, f apiclient.DeliveryFilter) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	ds, err := api.WebhookDeliveries(ctx, name, f)
	if err != nil {
		return fmt.Errorf("client deliveries %s: %w", name, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "DELIVERY\tEVENT\tSTATE\tCREATED\tATTEMPT\tAT\tRESULT\tMS\tNEXT")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\t\t%s\n", d.ID, d.Event, d.State, fmtTime(d.CreatedAt, c.loc), fmtTimePtr(d.NextAttemptAt, c.loc))
		for _, a := range d.Log {
			result := a.Outcome
			if a.HTTPStatus != 0 {
				result += fmt.Sprintf(" %d", a.HTTPStatus)
			}
			if a.Error != "" && a.HTTPStatus == 0 {
				result += ": " + a.Error
			}
			n := strconv.Itoa(a.Attempt)
			if a.Replay > 0 {
				n = fmt.Sprintf("r%d.%d", a.Replay, a.Attempt)
			}
			fmt.Fprintf(tw, "\t\t\t\t%s\t%s\t%s\t%d\t%s\n", n, fmtTime(a.At, c.loc), result, a.DurationMS, fmtTimePtr(a.NextTry, c.loc))
		}
	}
	return tw.Flush()
}

func (c *cli) clientReplay(ctx context.Context, name, delivery string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	d, err := api.ReplayWebhook(ctx, name, delivery)
	if err != nil {
		return fmt.Errorf("client replay %s %s: %w", name, delivery, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Webhook %s (%s) queued again for %s (replay %d, same id).\n", d.ID, d.Event, name, d.Replays)
	return nil
}

func (c *cli) tokenAdd(ctx context.Context, name string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	t, err := api.CreateToken(ctx, name)
	if err != nil {
		return fmt.Errorf("token add %s: %w", name, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Admin token %d (%s) made.\n", t.ID, t.Name)
	fmt.Fprintf(c.stdout, "Token: %s\n(shown this once; send it as \"Authorization: Bearer <token>\", or hubctl --token)\n", t.Token)
	return nil
}

func (c *cli) tokenList(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	ts, err := api.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tREVOKED")
	for _, t := range ts {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, fmtTime(t.CreatedAt, c.loc), fmtTimePtr(t.RevokedAt, c.loc))
	}
	return tw.Flush()
}

func (c *cli) tokenRevoke(ctx context.Context, arg string) error {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id <= 0 {
		return usagef("token revoke: ID is a number (see hubctl token list), got %q", arg)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	t, err := api.RevokeToken(ctx, id)
	if err != nil {
		return fmt.Errorf("token revoke %d: %w", id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Token %d (%s) revoked; it is refused from now on.\n", t.ID, t.Name)
	return nil
}
