package app

import (
	"context"
	"encoding/json"

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
