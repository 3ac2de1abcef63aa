package fleet

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// Sender publishes a hub→device message to one locker; the broker implements it.
type Sender interface {
	Send(lockerID string, kind protocol.Kind, payload []byte) error
}

// DesiredResend is how often a desired configuration not yet reported as
// applied is sent again to a connected locker (hub→device messages are QoS 0
// with an application-level acknowledgement: the reported desired_version).
const DesiredResend = 30 * time.Second

// Desired delivers desired configurations: when a locker subscribes to its
// desired topic, when the configuration changes, and again every
// DesiredResend until the locker reports the version applied.
type Desired struct {
	twins *Twins
	send  Sender
	log   *slog.Logger
}

// NewDesired wires the delivery to the twins' changes.
func NewDesired(twins *Twins, send Sender, log *slog.Logger) *Desired {
	d := &Desired{twins: twins, send: send, log: log}
	twins.Observe(func(t *Twin, _ TwinChange) { d.deliver(t) })
	twins.ObserveFollowed(func(t *Twin, _ TwinChange) { d.deliver(t) })
	return d
}

// Subscribed is told which hub→device kinds a locker has subscribed to.
func (d *Desired) Subscribed(lockerID string, kinds []protocol.Kind) {
	if slices.Contains(kinds, protocol.KindDesired) {
		d.deliver(d.twins.Get(lockerID))
	}
}

// deliver sends the desired configuration when the locker has not applied it.
func (d *Desired) deliver(t *Twin) {
	if t == nil || t.DesiredVersion <= t.Reported.DesiredVersion {
		return
	}
	cfg := t.Desired
	if len(cfg) == 0 {
		cfg = json.RawMessage(`{}`)
	}
	payload, err := json.Marshal(protocol.Desired{Version: t.DesiredVersion, Config: cfg})
	if err != nil {
		return
	}
	if err := d.send.Send(t.LockerID, protocol.KindDesired, payload); err != nil {
		d.log.Debug("desired configuration not sent", "locker", t.LockerID, "version", t.DesiredVersion, "error", err)
	}
}

// Run re-sends pending desired configurations until ctx ends.
func (d *Desired) Run(ctx context.Context) {
	tick := time.NewTicker(DesiredResend)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var pending []*Twin
		d.twins.Each(func(t *Twin) {
			if t.DesiredVersion > t.Reported.DesiredVersion {
				pending = append(pending, t)
			}
		})
		for _, t := range pending {
			d.deliver(t)
		}
	}
}
