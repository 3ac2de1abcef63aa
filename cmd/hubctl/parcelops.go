package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Returns and service access (docs/parcels.md "Returns", "Service access").
var parcelOpsCommands = []command{
	{
		name: "parcel returns", args: "[--locker ID] [--carrier C]", nargs: 0,
		summary: "list what couriers collect: expired, cancelled after deposit and customer returns, per locker and carrier",
		doc:     "Collect each with `hubctl parcel collect ID`.",
		setup: func(fs *flag.FlagSet) runFunc {
			locker := fs.String("locker", "", "only locker `ID`")
			carrier := fs.String("carrier", "", "only `carrier`")
			return func(ctx context.Context, c *cli, args []string) error { return c.parcelReturns(ctx, *locker, *carrier) }
		},
	},
	{
		name: "parcel collect", args: "ID", nargs: 1,
		summary: "open the cell of a parcel marked for return for the courier who takes it back",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.parcelCollect(ctx, args[0]) }
		},
	},
	{
		name: "parcel return", args: "LOCKER SIZE (--phone P | --email E) [--name N] [--reference R] [--barcode B] [--carrier C]", nargs: 2,
		summary: "a customer return: reserve a cell (held for returns first); the sender gets the return code",
		setup: func(fs *flag.FlagSet) runFunc {
			var n apiclient.NewReturn
			fs.StringVar(&n.Sender.Phone, "phone", "", "the sender's `phone` number")
			fs.StringVar(&n.Sender.Email, "email", "", "the sender's e-mail `address`")
			fs.StringVar(&n.Sender.Name, "name", "", "the sender's `name`")
			fs.StringVar(&n.Reference, "reference", "", "the `reference` (RMA number)")
			fs.StringVar(&n.Barcode, "barcode", "", "the `barcode` on the return label")
			fs.StringVar(&n.Carrier, "carrier", "", "the `carrier` that collects it")
			return func(ctx context.Context, c *cli, args []string) error {
				n.Locker, n.Size = args[0], args[1]
				if n.Sender.Phone == "" && n.Sender.Email == "" {
					return usagef("parcel return: --phone or --email is required (the return code goes there)")
				}
				return c.parcelReturn(ctx, n)
			}
		},
	},
	{
		name: "cell service-open", args: "LOCKER CELL", nargs: 2,
		summary: "open any cell in service mode (recorded as service:<you>, audited)",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.serviceOpen(ctx, args[0], args[1]) }
		},
	},
	{
		name: "cell service-code", args: "LOCKER CELL", nargs: 2,
		summary: "a one-time code that opens CELL once at the locker's keypad within 15 minutes",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.serviceCode(ctx, args[0], args[1]) }
		},
	},
}

func init() {
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append(append([]command{}, parcelOpsCommands...), commands[i:]...)...)
			return
		}
	}
	commands = append(commands, parcelOpsCommands...)
}

func (c *cli) parcelReturns(ctx context.Context, locker, carrier string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	groups, err := api.Returns(ctx, locker, carrier)
	if err != nil {
		return fmt.Errorf("parcel returns: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if len(groups) == 0 {
		fmt.Fprintln(c.stderr, "Nothing to collect.")
		return nil
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "LOCKER\tCARRIER\tCELL\tPARCEL\tKIND\tSTATE\tREFERENCE")
	for _, g := range groups {
		for _, p := range g.Parcels {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.LockerID, orDash(g.Carrier), p.Cell, p.ID, orDash(p.Kind), p.State, orDash(p.Reference))
		}
	}
	return tw.Flush()
}

func (c *cli) parcelCollect(ctx context.Context, id string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	out, err := api.CollectParcel(ctx, id)
	if err != nil {
		return fmt.Errorf("parcel collect: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Cell %s of %s opens for %s (command %s).\n", out.Parcel.Cell, out.Parcel.LockerID, out.Parcel.ID, out.Command.ID)
	return nil
}

func (c *cli) parcelReturn(ctx context.Context, n apiclient.NewReturn) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	p, err := api.CreateReturn(ctx, n)
	if err != nil {
		return fmt.Errorf("parcel return: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	return writeParcel(c.stdout, p, c.loc)
}

func (c *cli) serviceOpen(ctx context.Context, locker, cell string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	cmd, err := api.ServiceOpen(ctx, locker, cell)
	if err != nil {
		return fmt.Errorf("cell service-open: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Cell %s of %s opens in service mode (command %s, %s).\n", cell, locker, cmd.ID, cmd.State)
	return nil
}

func (c *cli) serviceCode(ctx context.Context, locker, cell string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	sc, err := api.IssueServiceCode(ctx, locker, cell)
	if err != nil {
		return fmt.Errorf("cell service-code: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Service code for %s cell %s: %s (once, until %s)\n", sc.LockerID, sc.Cell, sc.Code, fmtTime(sc.ExpiresAt, c.loc))
	return nil
}
