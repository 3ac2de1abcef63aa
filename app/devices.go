package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/protocol"
)

// startTwins loads the twins and the fleet overview; the twin writer runs
// until runCtx ends (after the broker has closed, so what it took is written).
func (a *App) startTwins(ctx, runCtx context.Context) error {
	a.Twins = fleet.NewTwins(a.Pool, a.log.With("component", "twin"), a.Metrics, fleet.TwinsConfig{})
	if err := a.Twins.Load(ctx); err != nil {
		return err
	}
	a.Overview = fleet.NewOverview(a.Registry, a.Twins, a.log.With("component", "overview"))
	if err := a.Overview.Load(ctx); err != nil {
		return err
	}
	a.Twins.SetLayout(a.Overview.HasCell)
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.Overview.Run(runCtx) }()
	return nil
}

// routeDeviceMessages sends the lockers' state and events to the twins, and
// desired configurations to the lockers once they subscribe.
func (a *App) routeDeviceMessages(runCtx context.Context) {
	desired := fleet.NewDesired(a.Twins, a.Broker, a.log.With("component", "desired"))
	a.Broker.OnSubscribed(desired.Subscribed)
	a.wg.Add(2)
	go func() { defer a.wg.Done(); desired.Run(runCtx) }()
	// Every observer of the twins is in place: start writing.
	go func() { defer a.wg.Done(); a.Twins.Run(runCtx) }()

	toTwins := func(m broker.Message) {
		a.Twins.Submit(fleet.Inbound{LockerID: m.LockerID, Kind: m.Kind, Payload: m.Payload, Received: m.Received,
			Done: func(err error) { m.Done(deviceError(err)) }})
	}
	a.Broker.Handle(protocol.KindState, toTwins)
	a.Broker.Handle(protocol.KindEvents, toTwins)
}

// deviceError maps a domain verdict on a device message to the broker's.
func deviceError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, protocol.ErrInvalid):
		return fmt.Errorf("%w: %v", broker.ErrInvalid, err)
	default: // overloaded, or anything unexpected: withhold the PUBACK
		return fmt.Errorf("%w: %v", broker.ErrOverloaded, err)
	}
}

// presence tells the registry (durable times) and the overview (live rows)
// when a locker's session starts and ends.
type presence struct {
	reg *fleet.Registry
	ov  *fleet.Overview
}

func (p presence) Connected(id string, at time.Time) {
	p.reg.Connected(id, at)
	p.ov.SetOnline(id, true)
}

func (p presence) Disconnected(id string, at time.Time) {
	p.reg.Disconnected(id, at)
	p.ov.SetOnline(id, false)
}
