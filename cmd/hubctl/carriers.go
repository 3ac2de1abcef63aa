package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Carrier commands (docs/parcels.md, "Carriers"): the transport companies
// and their share of the network. Listed before `api`.
var carrierCommands = []command{
	{
		name: "carrier add", args: "ID [--name N] [--contact C]", nargs: 1,
		summary: "add a carrier (transport company)",
		setup: func(fs *flag.FlagSet) runFunc {
			name := fs.String("name", "", "the carrier's `name` (default: its id)")
			contact := fs.String("contact", "", "a `contact` (e-mail, phone)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.carrierAdd(ctx, apiclient.NewCarrier{ID: args[0], Name: *name, Contact: *contact})
			}
		},
	},
	{
		name: "carrier list", nargs: 0,
		summary: "list the carriers with their lockers and cells used / quota per size",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.carrierList(ctx) }
		},
	},
	{
		name: "carrier show", args: "ID", nargs: 1,
		summary: "show a carrier's whole lockers, segments and quotas",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.carrierShow(ctx, args[0]) }
		},
	},
	{
		name: "carrier set", args: "ID [--name N] [--contact C]", nargs: 1,
		summary: "change a carrier's name or contact",
		setup: func(fs *flag.FlagSet) runFunc {
			name := fs.String("name", "", "the new `name`")
			contact := fs.String("contact", "", "the new `contact`")
			return func(ctx context.Context, c *cli, args []string) error {
				var n, ct *string
				fs.Visit(func(f *flag.Flag) {
					switch f.Name {
					case "name":
						n = name
					case "contact":
						ct = contact
					}
				})
				if n == nil && ct == nil {
					return usagef("carrier set: nothing to change (--name N, --contact C)")
				}
				return c.carrierDone(ctx, "carrier set", args[0], func(api *apiclient.Client) (apiclient.CarrierDetail, error) {
					return api.UpdateCarrier(ctx, args[0], n, ct)
				})
			}
		},
	},
	{
		name: "carrier rm", args: "ID", nargs: 1,
		summary: "remove a carrier with its segments and quotas",
		doc:     "Refused while lockers name the carrier: take it off them first (carrier unassign ID --locker L).",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				api, err := c.client()
				if err != nil {
					return err
				}
				if err := api.DeleteCarrier(ctx, args[0]); err != nil {
					return fmt.Errorf("carrier rm %s: %w", args[0], err)
				}
				fmt.Fprintf(c.stdout, "Carrier %s removed.\n", args[0])
				return nil
			}
		},
	},
	{
		name: "carrier assign", args: "ID (--locker L | --segment S)", nargs: 1,
		summary: "give a carrier a whole locker or every locker of a segment",
		setup: func(fs *flag.FlagSet) runFunc {
			return assignRun(fs, "carrier assign", true)
		},
	},
	{
		name: "carrier unassign", args: "ID (--locker L | --segment S)", nargs: 1,
		summary: "take a whole locker or a segment from a carrier",
		setup: func(fs *flag.FlagSet) runFunc {
			return assignRun(fs, "carrier unassign", false)
		},
	},
	{
		name: "carrier quota", args: "ID LOCKER SIZE=N[,SIZE=N…] | ID LOCKER --clear", nargs: -1,
		summary: "set (or clear) a carrier's quota of cells per size in a shared locker",
		doc: "Replaces the carrier's quotas at the locker, e.g. `hubctl carrier quota dhl L-7 M=6,L=2`:\n" +
			"the carrier holds at most 6 M and 2 L cells there, and that many are kept for it; carriers\n" +
			"without a quota share the rest. --clear removes the carrier's quotas at the locker.",
		setup: func(fs *flag.FlagSet) runFunc {
			clear := fs.Bool("clear", false, "remove the carrier's quotas at the locker")
			return func(ctx context.Context, c *cli, args []string) error {
				if len(args) != 2 && len(args) != 3 || (len(args) == 3) == *clear {
					return usagef("carrier quota: usage: hubctl carrier quota ID LOCKER SIZE=N[,SIZE=N…] | ID LOCKER --clear")
				}
				cells := map[string]int{}
				if len(args) == 3 {
					for _, kv := range commaList(args[2]) {
						size, n, ok := strings.Cut(kv, "=")
						v, err := strconv.Atoi(n)
						if !ok || err != nil {
							return usagef("carrier quota: %q is not SIZE=N (e.g. M=6)", kv)
						}
						cells[strings.ToUpper(strings.TrimSpace(size))] = v
					}
				}
				return c.carrierDone(ctx, "carrier quota", args[0], func(api *apiclient.Client) (apiclient.CarrierDetail, error) {
					return api.SetCarrierQuotas(ctx, args[0], args[1], cells)
				})
			}
		},
	},
}

func assignRun(fs *flag.FlagSet, what string, add bool) runFunc {
	locker := fs.String("locker", "", "a whole `locker`")
	segment := fs.String("segment", "", "every locker of a `segment`")
	return func(ctx context.Context, c *cli, args []string) error {
		kind, name := "lockers", *locker
		switch {
		case (*locker == "") == (*segment == ""):
			return usagef("%s: give --locker L or --segment S", what)
		case *segment != "":
			kind, name = "segments", *segment
		}
		return c.carrierDone(ctx, what, args[0], func(api *apiclient.Client) (apiclient.CarrierDetail, error) {
			if add {
				return api.AssignCarrier(ctx, args[0], kind, name)
			}
			return api.UnassignCarrier(ctx, args[0], kind, name)
		})
	}
}

func init() {
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append(append([]command{}, carrierCommands...), commands[i:]...)...)
			return
		}
	}
	commands = append(commands, carrierCommands...)
}

func (c *cli) carrierAdd(ctx context.Context, n apiclient.NewCarrier) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	cr, err := api.CreateCarrier(ctx, n)
	if err != nil {
		return fmt.Errorf("carrier add %s: %w", n.ID, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Carrier %s (%s) added.\n", cr.ID, cr.Name)
	return nil
}

// carrierDone runs a change and prints the carrier as it is after it.
func (c *cli) carrierDone(ctx context.Context, what, id string, fn func(*apiclient.Client) (apiclient.CarrierDetail, error)) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	d, err := fn(api)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	c.printCarrier(d)
	return nil
}

func (c *cli) printCarrier(d apiclient.CarrierDetail) {
	fmt.Fprintf(c.stdout, "Carrier %s (%s)\n", d.ID, d.Name)
	if d.Contact != "" {
		fmt.Fprintf(c.stdout, "  contact   %s\n", d.Contact)
	}
	fmt.Fprintf(c.stdout, "  lockers   %s\n", orNone(d.Lockers))
	fmt.Fprintf(c.stdout, "  segments  %s\n", orNone(d.Segments))
	if len(d.Quotas) == 0 {
		fmt.Fprintln(c.stdout, "  quotas    none")
		return
	}
	byLocker := map[string][]string{}
	var lockers []string
	for _, q := range d.Quotas {
		if byLocker[q.Locker] == nil {
			lockers = append(lockers, q.Locker)
		}
		byLocker[q.Locker] = append(byLocker[q.Locker], fmt.Sprintf("%s=%d", q.Size, q.Cells))
	}
	for i, l := range lockers {
		label := "  quotas   "
		if i > 0 {
			label = "           "
		}
		fmt.Fprintf(c.stdout, "%s %s: %s\n", label, l, strings.Join(byLocker[l], ", "))
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func (c *cli) carrierShow(ctx context.Context, id string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	d, err := api.Carrier(ctx, id)
	if err != nil {
		return fmt.Errorf("carrier show %s: %w", id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	c.printCarrier(d)
	return nil
}

// carrierList prints each carrier's use: lockers and, per size, cells used
// (and / quota where it has quotas of that size).
func (c *cli) carrierList(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	uses, err := api.CarrierUsage(ctx)
	if err != nil {
		return fmt.Errorf("carrier list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "CARRIER\tNAME\tLOCKERS\tSEGMENTS\tS\tM\tL\tXL")
	sort.Slice(uses, func(i, j int) bool { return uses[i].ID < uses[j].ID })
	for _, u := range uses {
		cols := make([]string, 0, 4)
		for _, size := range []string{"S", "M", "L", "XL"} {
			cols = append(cols, sizeUse(u.Sizes[size]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", u.ID, u.Name, u.Lockers, orDash(strings.Join(u.Segments, ",")), strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

// sizeUse is "used"; with quotas "used/quota", or "used (held in the
// quota lockers/quota)" when it also holds cells elsewhere.
func sizeUse(s apiclient.CarrierSizeUse) string {
	if s.Quota == nil {
		return strconv.Itoa(s.Used)
	}
	if s.Used == *s.QuotaUsed {
		return fmt.Sprintf("%d/%d", s.Used, *s.Quota)
	}
	return fmt.Sprintf("%d (%d/%d)", s.Used, *s.QuotaUsed, *s.Quota)
}
