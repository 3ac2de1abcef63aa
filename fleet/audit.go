package fleet

import (
	"context"

	"github.com/lockerhub/lockerhub/audit"
)

// Every change of the registry, the desired configurations and the
// certificates is recorded with audit.Record in the transaction that makes
// it; the actor comes from the context (web puts it there per request).
// Object types: locker, model, desired, certificate, enroll_token, code_key
// (a pickup-code secret's version, never its value).

// deviceActor is a locker acting for itself (enrolment, renewal), keeping
// the address and request id of the context's actor.
func deviceActor(ctx context.Context, lockerID string) audit.Actor {
	a := audit.ActorFrom(ctx)
	return audit.Actor{Kind: audit.KindDevice, ID: lockerID, Name: lockerID, Addr: a.Addr, RequestID: a.RequestID}
}

// DeviceContext returns ctx with the locker as the actor of its changes
// (web uses it for a renewal over the locker's client certificate).
func DeviceContext(ctx context.Context, lockerID string) context.Context {
	return audit.WithActor(ctx, deviceActor(ctx, lockerID))
}
