package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/protocol"
)

// startTwins loads the twins and routes the lockers' state and events to
// them; the writer runs until runCtx ends (after the broker has closed).
func (a *App) startTwins(ctx, runCtx context.Context) error {
	a.Twins = fleet.NewTwins(a.Pool, a.log.With("component", "twin"), a.Metrics, fleet.TwinsConfig{})
	if err := a.Twins.Load(ctx); err != nil {
		return err
	}
	toTwins := func(m broker.Message) {
		a.Twins.Submit(fleet.Inbound{LockerID: m.LockerID, Kind: m.Kind, Payload: m.Payload, Received: m.Received,
			Done: func(err error) { m.Done(deviceError(err)) }})
	}
	a.Broker.Handle(protocol.KindState, toTwins)
	a.Broker.Handle(protocol.KindEvents, toTwins)
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.Twins.Run(runCtx) }()
	return nil
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
