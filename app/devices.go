package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/protocol"
	"github.com/lockerhub/lockerhub/telemetry"
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
	a.Metrics.MustRegister(fleet.OverviewCollector{O: a.Overview})
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.Overview.Run(runCtx) }()
	return nil
}

// startTelemetry creates the telemetry partitions that are due and loads the
// latest samples; routeDeviceMessages runs the ingest.
func (a *App) startTelemetry(ctx context.Context) error {
	var err error
	a.Telemetry, err = telemetry.NewIngest(a.Pool, a.log.With("component", "telemetry"), a.Metrics, a.cfg.Telemetry)
	if err != nil {
		return err
	}
	a.TelemetryStore = telemetry.NewStore(a.Pool, a.cfg.Telemetry.Retention)
	return a.Telemetry.Start(ctx)
}

// startCommands loads the open commands and wires them to the broker (sends,
// answers, re-sends after a locker subscribes) and to the stored events (door
// confirmations). Call it before routeDeviceMessages starts the twin writer.
func (a *App) startCommands(ctx, runCtx context.Context) error {
	a.Commands = fleet.NewCommands(a.Pool, a.Broker, a.Registry, a.Overview, a.Twins,
		a.log.With("component", "commands"), a.Metrics, a.cfg.Commands)
	if a.cfg.Cluster.Node != "" {
		a.Cluster = fleet.NewCluster(a.Pool, a.log.With("component", "cluster", "node", a.cfg.Cluster.Node), a.Metrics, a.cfg.Cluster,
			a.Registry, a.Overview, a.Twins, a.Commands, a.Broker.Online)
		if err := a.Cluster.Start(ctx); err != nil {
			return err
		}
		// The latest telemetry sample (twin, /telemetry/latest, the fleet
		// map) of lockers on other nodes follows theirs.
		a.Cluster.FollowTelemetry(a.Telemetry.RefreshLatest)
		a.Telemetry.OnStored(func(id string, _ telemetry.Sample) { a.Cluster.AnnounceTelemetry(id) })
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.Cluster.Run(runCtx) }()
	}
	if err := a.Commands.Load(ctx); err != nil {
		return err
	}
	a.Broker.OnResponse(a.Commands.Response)
	a.Broker.OnSubscribed(a.Commands.Subscribed)
	a.Twins.HookEvents(a.Commands.StoreConfirmations)
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.Commands.Run(runCtx) }()
	return nil
}

// startAsks wires the lockers' asks (answered off the read loop, stored
// before the PUBACK), the pickup-code secrets (codes.key) and the offline
// parcel lists (parcels.sync) to the broker. Call it before the broker starts.
func (a *App) startAsks(ctx, runCtx context.Context) error {
	asks := a.cfg.Asks
	// code.check waits for the POS terminal when a parcel has an amount due.
	charge := a.cfg.Parcels.ChargeTimeout
	if charge == 0 {
		charge = parcels.DefaultChargeTimeout
	}
	if need := charge + 5*time.Second; asks.HandlerTimeout < need {
		asks.HandlerTimeout = need
	}
	a.Asks = fleet.NewAsks(a.Pool, a.Broker, a.log.With("component", "asks"), a.Metrics, asks)
	a.CodeKeys = fleet.NewCodeKeys(a.Pool, a.Broker, a.log.With("component", "codekeys"), a.Metrics)
	a.LockerSync = fleet.NewLockerSync(a.Pool, a.Broker, a.log.With("component", "lockersync"), a.Metrics)
	if err := a.CodeKeys.Load(ctx); err != nil {
		return err
	}
	if err := a.LockerSync.Load(ctx); err != nil {
		return err
	}
	a.Broker.Handle(protocol.KindAskReq, func(m broker.Message) {
		a.Asks.Submit(fleet.Inbound{LockerID: m.LockerID, Kind: m.Kind, Payload: m.Payload, Received: m.Received,
			Done: func(err error) { m.Done(deviceError(err)) }})
	})
	for _, d := range []interface {
		Subscribed(string, []protocol.Kind)
		Response(string, protocol.Response)
	}{a.CodeKeys, a.LockerSync} {
		a.Broker.OnSubscribed(d.Subscribed)
		a.Broker.OnResponse(d.Response)
	}
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.Asks.Run(runCtx) }()
	go func() { defer a.wg.Done(); a.CodeKeys.Run(runCtx) }()
	go func() { defer a.wg.Done(); a.LockerSync.Run(runCtx) }()
	return nil
}

// routeDeviceMessages sends the lockers' state and events to the twins,
// telemetry to its ingest, and desired configurations to the lockers once
// they subscribe. The writers run until runCtx ends, after the broker has
// closed, so what they took is written (or left unacknowledged).
func (a *App) routeDeviceMessages(runCtx context.Context) {
	desired := fleet.NewDesired(a.Twins, a.Broker, a.log.With("component", "desired"))
	a.Broker.OnSubscribed(desired.Subscribed)
	a.wg.Add(3)
	go func() { defer a.wg.Done(); desired.Run(runCtx) }()
	// Every observer of the twins is in place: start writing.
	go func() { defer a.wg.Done(); a.Twins.Run(runCtx) }()
	// The telemetry ingest also runs its partition maintenance and roller.
	go func() { defer a.wg.Done(); a.Telemetry.Run(runCtx) }()

	toTwins := func(m broker.Message) {
		a.Twins.Submit(fleet.Inbound{LockerID: m.LockerID, Kind: m.Kind, Payload: m.Payload, Received: m.Received,
			Done: func(err error) { m.Done(deviceError(err)) }})
	}
	a.Broker.Handle(protocol.KindState, toTwins)
	a.Broker.Handle(protocol.KindEvents, toTwins)
	a.Broker.Handle(protocol.KindTelemetry, func(m broker.Message) {
		a.Telemetry.Submit(telemetry.Inbound{LockerID: m.LockerID, Payload: m.Payload, Received: m.Received,
			Done: func(err error) { m.Done(deviceError(err)) }})
	})
}

// deviceError maps a domain verdict on a device message to the broker's.
func deviceError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, protocol.ErrInvalid):
		return fmt.Errorf("%w: %v", broker.ErrInvalid, err)
	default: // overloaded (twins, telemetry), or anything unexpected: withhold the PUBACK
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
	p.ov.SetOnline(id, p.reg.Online(id)) // still online when another hub node holds it now
}
