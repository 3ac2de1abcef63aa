package app

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/protocol"
)

// startParcels loads the parcels and wires them to the fleet: free cells and
// the cells parcels hold (overview), the cells' reported state (twins),
// cell.open commands, and every twin change (to move parcels on). Call it
// after startCommands and before routeDeviceMessages starts the twin writer.
// The code.check ask is registered by the ask transport (Parcels.CheckCode).
func (a *App) startParcels(ctx, runCtx context.Context) error {
	cfg := a.cfg.Parcels
	if cfg.Keys == nil {
		cfg.Keys = a.CodeKeys
	}
	if cfg.Outbox == nil {
		cfg.Outbox = parcelOutbox{}
	}
	if cfg.Offline == nil {
		cfg.Offline = a.LockerSync
	}
	if cfg.Receipts == nil {
		cfg.Receipts = parcelReceipts{a}
	}
	if cfg.ReservationHours == nil {
		cfg.ReservationHours = a.Access.ClientReservationHours // each partner's own deadline
	}
	if cfg.Quotas == nil {
		cfg.Quotas = parcelQuotas{a.Registry}
	}
	a.Parcels = parcels.New(a.Pool, parcelFleet{a.Overview, a.Twins, a.Commands, a.Registry}, a.log.With("component", "parcels"), a.Metrics, cfg)
	if err := a.Parcels.Load(ctx); err != nil {
		return err
	}
	a.Twins.Observe(func(t *fleet.Twin, ch fleet.TwinChange) {
		if len(ch.Cells) == 0 {
			return // power, firmware, desired: no parcel moves
		}
		cells := make([]string, 0, len(ch.Cells))
		for c := range ch.Cells {
			cells = append(cells, c)
		}
		a.Parcels.TwinChanged(t.LockerID, cells)
	})
	a.Asks.Register(protocol.AskCodeCheck, a.Parcels.CheckCode)
	a.Asks.Register(protocol.AskBarcodeCheck, a.Parcels.CheckBarcode)
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.Parcels.Run(runCtx) }()
	return nil
}

// parcelOutbox hands parcels' webhooks and notifications to the outbox, in
// the transaction of the change they tell of.
type parcelOutbox struct{}

func (parcelOutbox) Enqueue(ctx context.Context, tx pgx.Tx, m parcels.OutMessage) error {
	return outbox.Enqueue(ctx, tx, outbox.Message{ID: m.ID, Channel: m.Channel, ClientID: m.ClientID, To: m.To,
		Template: m.Template, Data: m.Data, About: m.Parcel, Carrier: m.Carrier, Language: m.Language})
}

// parcelReceipts reads the fiscal receipts' delivery from the outbox.
type parcelReceipts struct{ a *App }

func (r parcelReceipts) Receipts(ctx context.Context, ids []string) (map[string]parcels.Receipt, error) {
	got, err := outbox.FiscalReceipts(ctx, r.a.Pool, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]parcels.Receipt, len(got))
	for id, g := range got {
		out[id] = parcels.Receipt{ID: id, State: g.State, Attempts: g.Attempts, LastError: g.LastError, SentAt: g.SentAt, Number: g.Number}
	}
	return out, nil
}

// parcelQuotas reads the carriers' quotas of the fleet for parcels.
type parcelQuotas struct{ reg *fleet.Registry }

func (q parcelQuotas) Quotas(ctx context.Context, db parcels.Queryer, lockerIDs []string) ([]parcels.Quota, error) {
	fq, err := q.reg.QuotasAt(ctx, db, lockerIDs)
	if err != nil {
		return nil, err
	}
	out := make([]parcels.Quota, len(fq))
	for i, x := range fq {
		out[i] = parcels.Quota{Carrier: x.Carrier, LockerID: x.LockerID, Size: x.Size, Cells: x.Cells}
	}
	return out, nil
}

// parcelFleet adapts the fleet to parcels.Fleet.
type parcelFleet struct {
	ov   *fleet.Overview
	tw   *fleet.Twins
	cmds *fleet.Commands
	reg  *fleet.Registry
}

func (f parcelFleet) Place(ctx context.Context, lockerID string) (string, string, error) {
	l, err := f.reg.Get(ctx, lockerID)
	if err != nil {
		return "", "", err
	}
	return l.Address, l.TimeZone, nil
}

// HasPOS: a locker has a POS terminal when its model has the capability.
func (f parcelFleet) HasPOS(ctx context.Context, lockerID string) (bool, error) {
	l, err := f.reg.Get(ctx, lockerID)
	if err != nil {
		return false, err
	}
	if l.Model == "" {
		return false, nil
	}
	m, err := f.reg.GetModel(ctx, l.Model)
	if err != nil {
		return false, err
	}
	return slices.Contains(m.Capabilities, fleet.CapPOS), nil
}

// Charge sends pos.charge as a command (stored, re-sent until answered or
// not_after, deduplicated by key) and waits for its end.
func (f parcelFleet) Charge(ctx context.Context, r parcels.ChargeRequest) (parcels.ChargeOutcome, error) {
	params, _ := json.Marshal(r.Params)
	cmd, _, err := f.cmds.Create(ctx, fleet.NewCommand{LockerID: r.LockerID, Method: protocol.MethodPOSCharge, Params: params,
		IdempotencyKey: r.IdempotencyKey, ValidFor: r.ValidFor, Caller: "parcels", CreatedBy: r.CreatedBy})
	if err != nil {
		return parcels.ChargeOutcome{}, err
	}
	if cmd, err = f.cmds.Wait(ctx, cmd.ID); err != nil {
		return parcels.ChargeOutcome{Command: cmd.ID, State: cmd.State}, err
	}
	out := parcels.ChargeOutcome{Command: cmd.ID, State: cmd.State, Result: cmd.Result}
	if cmd.Error != nil {
		out.Code, out.Message = cmd.Error.Code, cmd.Error.Message
	}
	return out, nil
}

func (f parcelFleet) FreeCells(lockerID, size string) ([]string, bool) {
	return f.ov.FreeCellNames(lockerID, size)
}

func (f parcelFleet) ReturnCells(lockerID, size string) ([]string, bool) {
	return f.ov.HeldCellNames(lockerID, size, fleet.HoldReturns)
}

func (f parcelFleet) SetTaken(lockerID string, cells []string) { f.ov.SetTaken(lockerID, cells) }

func (f parcelFleet) Cell(lockerID, cell string) (parcels.CellReport, bool) {
	t := f.tw.Get(lockerID)
	if t == nil {
		return parcels.CellReport{}, false
	}
	c, ok := t.Reported.Cells[cell]
	if !ok {
		return parcels.CellReport{}, false
	}
	return parcels.CellReport{Door: c.Door, DoorAt: parcels.Stamp{Boot: c.DoorAt.Boot, Seq: c.DoorAt.Seq},
		Occupied: c.Occupied, OccupiedAt: parcels.Stamp{Boot: c.OccupiedAt.Boot, Seq: c.OccupiedAt.Seq}}, true
}

func (f parcelFleet) OpenCell(ctx context.Context, r parcels.OpenRequest) (parcels.Opened, error) {
	params, _ := json.Marshal(protocol.CellOpenParams{Cell: r.Cell})
	cmd, created, err := f.cmds.Create(ctx, fleet.NewCommand{LockerID: r.LockerID, Method: protocol.MethodCellOpen, Params: params,
		IdempotencyKey: r.IdempotencyKey, Caller: r.Caller, CreatedBy: r.CreatedBy})
	if err != nil {
		return parcels.Opened{}, err
	}
	return parcels.Opened{ID: cmd.ID, Created: created, Command: cmd}, nil
}
