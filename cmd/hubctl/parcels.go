package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Parcels: deliveries for delivery services (docs/parcels.md).
var parcelCommands = []command{
	{
		name: "parcel create", args: "LOCKER SIZE (--phone P | --email E) [--name N] [--reference R] [--storage-hours H] [--key K] [--carrier C] [--language L]", nargs: 2,
		summary: "create a delivery: reserve a free cell of SIZE (S, M, L, XL)",
		doc: "Reserves a free cell of the size on the locker. The recipient gets the pickup code by SMS or\n" +
			"e-mail once the courier has deposited the parcel. --key is an idempotency key: the same key\n" +
			"again returns the first parcel. The storage period defaults to the hub's (72 h).",
		setup: func(fs *flag.FlagSet) runFunc {
			var n apiclient.NewParcel
			fs.StringVar(&n.Recipient.Phone, "phone", "", "the recipient's `phone` number")
			fs.StringVar(&n.Recipient.Email, "email", "", "the recipient's e-mail `address`")
			fs.StringVar(&n.Recipient.Name, "name", "", "the recipient's `name`")
			fs.StringVar(&n.Recipient.Language, "language", "", "the recipient's `language` (BCP 47: de, de-AT): chooses the notification texts")
			fs.StringVar(&n.Reference, "reference", "", "the delivery service's `reference`")
			fs.IntVar(&n.StorageHours, "storage-hours", 0, "storage period in `hours` (hub default 72)")
			fs.StringVar(&n.Carrier, "carrier", "", "the `carrier` (callers of the whole fleet; else the caller's own)")
			fs.StringVar(&n.Barcode, "barcode", "", "the `barcode` on the parcel's label")
			fs.StringVar(&n.Contents, "contents", "", "declared `contents`")
			fs.Int64Var(&n.DeclaredValue, "value", 0, "declared value in `cents` (with --currency)")
			fs.StringVar(&n.Currency, "currency", "", "ISO 4217 `currency` of --value")
			due := fs.Int64("amount-due", 0, "charged at the locker's POS terminal before pickup, in `cents` (with --due-currency; the locker needs a POS)")
			dueCurrency := fs.String("due-currency", "EUR", "ISO 4217 `currency` of --amount-due")
			key := fs.String("key", "", "idempotency `key`")
			return func(ctx context.Context, c *cli, args []string) error {
				n.Locker, n.Size = args[0], args[1]
				if *due != 0 {
					n.AmountDue = &apiclient.Money{Amount: *due, Currency: *dueCurrency}
				}
				return c.parcelCreate(ctx, n, *key)
			}
		},
	},
	{
		name: "parcel list", args: "[--locker ID] [--state S] [--carrier C] [--reference R] [--tracking T] [--barcode B] [--phone P] [--email E] [--from D] [--to D] [--limit N] [--offset N]", nargs: 0,
		summary: "search parcels, newest first",
		doc: "States: reserved, deposited, picked_up, cancelled, expired, returned, reservation_expired. --tracking matches the\n" +
			"parcel's id or the delivery service's reference; --from and --to bound the creation time\n" +
			"(RFC 3339 or YYYY-MM-DD, UTC; --to is exclusive).",
		setup: func(fs *flag.FlagSet) runFunc {
			var f apiclient.ParcelFilter
			fs.StringVar(&f.Locker, "locker", "", "only the parcels of locker `ID`")
			fs.StringVar(&f.State, "state", "", "only parcels in `state`")
			fs.StringVar(&f.Carrier, "carrier", "", "only the parcels of `carrier`")
			fs.StringVar(&f.Reference, "reference", "", "only the parcels with this `reference`")
			fs.StringVar(&f.Tracking, "tracking", "", "the parcel's id or reference (`tracking` number)")
			fs.StringVar(&f.Barcode, "barcode", "", "only the parcel with this `barcode`")
			fs.StringVar(&f.Phone, "phone", "", "only the parcels of the recipient's `phone`")
			fs.StringVar(&f.Email, "email", "", "only the parcels of the recipient's e-mail `address`")
			fs.StringVar(&f.From, "from", "", "created at or after `time` (RFC 3339 or YYYY-MM-DD)")
			fs.StringVar(&f.To, "to", "", "created before `time` (RFC 3339 or YYYY-MM-DD)")
			fs.IntVar(&f.Limit, "limit", 0, "at most `N` parcels (hub default 100)")
			fs.IntVar(&f.Offset, "offset", 0, "skip the first `N` parcels")
			return func(ctx context.Context, c *cli, args []string) error { return c.parcelList(ctx, f) }
		},
	},
	{
		name: "parcel show", args: "ID", nargs: 1,
		summary: "show one parcel and its history",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.parcelShow(ctx, args[0]) }
		},
	},
	{
		name: "parcel edit", args: "ID [--name N] [--phone P] [--email E] [--storage-hours H] [--size S]", nargs: 1,
		summary: "correct a parcel: recipient contact, a longer storage period, another size",
		doc: "Recipient flags replace the recipient's contact (give all you want to keep). --storage-hours\n" +
			"only lengthens (a deposited parcel gets a new pickup code, sent to the recipient); --size moves\n" +
			"a reservation to a free cell of that size before the drop-off. Refusals name a code\n" +
			"(parcel_closed, parcel_not_stored, storage_not_extended, size_locked, no_free_cell).",
		setup: func(fs *flag.FlagSet) runFunc {
			var r apiclient.Recipient
			fs.StringVar(&r.Name, "name", "", "the recipient's `name`")
			fs.StringVar(&r.Phone, "phone", "", "the recipient's `phone` number")
			fs.StringVar(&r.Email, "email", "", "the recipient's e-mail `address`")
			hours := fs.Int("storage-hours", 0, "the new storage period in `hours` (longer only)")
			size := fs.String("size", "", "the new `size` (S, M, L, XL)")
			return func(ctx context.Context, c *cli, args []string) error {
				var e apiclient.ParcelEdit
				if r != (apiclient.Recipient{}) {
					e.Recipient = &r
				}
				if *hours != 0 {
					e.StorageHours = hours
				}
				if *size != "" {
					e.Size = size
				}
				if e == (apiclient.ParcelEdit{}) {
					return usagef("parcel edit: nothing to change (--name/--phone/--email, --storage-hours, --size)")
				}
				return c.parcelEdit(ctx, args[0], e)
			}
		},
	},
	{
		name: "parcel move", args: "ID CELL", nargs: 2,
		summary: "move a deposited parcel to another free cell of its locker",
		doc: "Opens the parcel's cell; once its door is closed with the cell empty, opens CELL; once that\n" +
			"door is closed with the cell occupied the move is done and the recipient gets a new code.\n" +
			"Follow it with `hubctl parcel show ID`.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.parcelMove(ctx, args[0], args[1]) }
		},
	},
	{
		name: "parcel cancel", args: "ID [--reason R]", nargs: 1,
		summary: "cancel a parcel: before deposit the cell is released, after it the parcel goes back",
		setup: func(fs *flag.FlagSet) runFunc {
			reason := fs.String("reason", "", "why (kept with the parcel)")
			return func(ctx context.Context, c *cli, args []string) error { return c.parcelCancel(ctx, args[0], *reason) }
		},
	},
}

func init() {
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append(append([]command{}, parcelCommands...), commands[i:]...)...)
			return
		}
	}
	commands = append(commands, parcelCommands...)
}

func (c *cli) parcelCreate(ctx context.Context, n apiclient.NewParcel, key string) error {
	if n.Recipient.Phone == "" && n.Recipient.Email == "" {
		return usagef("parcel create: --phone or --email is required (the pickup code goes there)")
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	p, err := api.CreateParcel(ctx, n, key)
	if err != nil {
		return fmt.Errorf("parcel create: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if p.Replayed {
		fmt.Fprintf(c.stderr, "The key %q was used before: this is the first parcel.\n", key)
	}
	return writeParcel(c.stdout, p, c.loc)
}

func (c *cli) parcelList(ctx context.Context, f apiclient.ParcelFilter) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	page, err := api.Parcels(ctx, f)
	if err != nil {
		return fmt.Errorf("parcel list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if len(page.Parcels) == 0 {
		fmt.Fprintln(c.stderr, "No parcels match.")
		return nil
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tLOCKER\tCELL\tSIZE\tSTATE\tCARRIER\tREFERENCE\tCREATED\tEXPIRES")
	for _, p := range page.Parcels {
		state := p.State
		if p.ToReturn && p.State != "returned" {
			state += " (to return)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.LockerID, p.Cell, p.Size, state, orDash(p.Carrier),
			orDash(p.Reference), fmtTime(p.CreatedAt, c.loc), fmtTimePtr(p.ExpiresAt, c.loc))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Offset+len(page.Parcels) < page.Total {
		fmt.Fprintf(c.stderr, "%d of %d parcels; --offset %d for more.\n", len(page.Parcels), page.Total, page.Offset+len(page.Parcels))
	}
	return nil
}

func (c *cli) parcelShow(ctx context.Context, id string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	p, err := api.Parcel(ctx, id)
	if err != nil {
		return fmt.Errorf("parcel show: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	return writeParcel(c.stdout, p, c.loc)
}

func (c *cli) parcelCancel(ctx context.Context, id, reason string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	p, err := api.CancelParcel(ctx, id, reason)
	if err != nil {
		return fmt.Errorf("parcel cancel: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	return writeParcel(c.stdout, p, c.loc)
}

func (c *cli) parcelEdit(ctx context.Context, id string, e apiclient.ParcelEdit) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	p, err := api.EditParcel(ctx, id, e)
	if err != nil {
		return fmt.Errorf("parcel edit: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	return writeParcel(c.stdout, p, c.loc)
}

func (c *cli) parcelMove(ctx context.Context, id, cell string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	out, err := api.MoveParcel(ctx, id, cell)
	if err != nil {
		return fmt.Errorf("parcel move: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Moving %s from %s to %s: cell %s opens (command %s).\n", out.Parcel.ID, out.Parcel.MoveFrom, out.Parcel.Cell,
		out.Parcel.MoveFrom, out.Command.ID)
	return nil
}

func writeParcel(w io.Writer, p apiclient.Parcel, loc *time.Location) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Parcel:\t%s\n", p.ID)
	state := p.State
	if p.ToReturn && p.State != "returned" {
		state += " (marked for return)"
	}
	fmt.Fprintf(tw, "State:\t%s\n", state)
	fmt.Fprintf(tw, "Locker:\t%s, cell %s (%s)\n", p.LockerID, p.Cell, p.Size)
	fmt.Fprintf(tw, "Carrier:\t%s\n", orDash(p.Carrier))
	fmt.Fprintf(tw, "Reference:\t%s\n", orDash(p.Reference))
	if p.MoveFrom != "" {
		fmt.Fprintf(tw, "Moving:\tfrom %s to %s (stage %s)\n", p.MoveFrom, p.Cell, p.MoveStage)
	}
	if p.Barcode != "" {
		fmt.Fprintf(tw, "Barcode:\t%s\n", p.Barcode)
	}
	if p.Contents != "" || p.DeclaredValue != 0 {
		fmt.Fprintf(tw, "Contents:\t%s, declared value %d.%02d %s\n", orDash(p.Contents), p.DeclaredValue/100, p.DeclaredValue%100, p.Currency)
	}
	if p.AmountDue != nil {
		fmt.Fprintf(tw, "Amount due:\t%s (charged at the locker before pickup)\n", money(p.AmountDue.Amount, p.AmountDue.Currency))
	}
	r := p.Recipient
	fmt.Fprintf(tw, "Recipient:\t%s\n", orDash(joinNonEmpty(r.Name, r.Phone, r.Email)))
	fmt.Fprintf(tw, "Storage:\t%d h\n", p.StorageHours)
	fmt.Fprintf(tw, "Created:\t%s by %s\n", fmtTime(p.CreatedAt, loc), orDash(p.CreatedBy))
	for _, t := range []struct {
		name string
		at   *time.Time
	}{{"Drop-off", p.DropoffAt}, {"Deposited", p.DepositedAt}, {"Expires", p.ExpiresAt}, {"Reminded", p.RemindedAt},
		{"Picked up", p.PickedUpAt}, {"Expired", p.ExpiredAt}, {"Cancelled", p.CancelledAt}, {"Collect", p.CollectAt}, {"Returned", p.ReturnedAt}} {
		if t.at != nil {
			fmt.Fprintf(tw, "%s:\t%s\n", t.name, fmtTimePtr(t.at, loc))
		}
	}
	if p.CancelReason != "" {
		fmt.Fprintf(tw, "Reason:\t%s\n", p.CancelReason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.Payments) > 0 {
		fmt.Fprintln(w, "\nPayments:")
		tw = newTable(w)
		fmt.Fprintln(tw, "  ID\tKIND\tAMOUNT\tSTATE\tTERMINAL\tRECEIPT\tAT\tREASON")
		for _, pay := range p.Payments {
			receipt := "-"
			if rc := pay.Receipt; rc != nil {
				receipt = rc.Type + " " + rc.State
				if rc.Number != "" {
					receipt += " " + rc.Number
				}
				if rc.State == "pending" && rc.Attempts > 0 {
					receipt += fmt.Sprintf(" (%d attempts: %s)", rc.Attempts, rc.LastError)
				}
			}
			kind := pay.Kind
			if pay.RefundOf != "" {
				kind += " of " + pay.RefundOf
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", pay.ID, kind, money(pay.Amount, pay.Currency), pay.State,
				orDash(pay.TerminalRef), receipt, fmtTime(pay.CreatedAt, loc), orDash(pay.Reason))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(p.History) > 0 {
		fmt.Fprintln(w, "\nHistory:")
		tw = newTable(w)
		fmt.Fprintln(tw, "  AT\tFROM\tTO\tBY\tWHERE\tSOURCE\tNOTE")
		for _, st := range p.History {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", fmtTime(st.At, loc), orDash(st.From), st.To, st.By,
				orDash(joinNonEmpty(st.Locker, st.Cell)), orDash(st.Source), orDash(st.Note))
		}
		return tw.Flush()
	}
	return nil
}

// money writes minor units with two decimals and the currency.
func money(amount int64, currency string) string {
	return fmt.Sprintf("%d.%02d %s", amount/100, amount%100, currency)
}

func joinNonEmpty(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += ", "
		}
		out += p
	}
	return out
}
