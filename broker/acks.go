package broker

import (
	"errors"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Errors a handler passes to Message.Done.
var (
	// ErrInvalid refuses a message as malformed: MQTT 5 PUBACK 0x99, MQTT 3.1.1
	// a plain PUBACK (it has no reason codes); either way it is never stored,
	// so a poison message cannot loop.
	ErrInvalid = errors.New("invalid payload")
	// ErrOverloaded withholds the PUBACK and disconnects the locker (0x97): its
	// unacknowledged messages come back after the reconnect.
	ErrOverloaded = errors.New("hub overloaded")
)

var (
	errAckStuck  = errors.New("PUBACK write did not finish in time")
	errOverQuota = errors.New("too many unacknowledged messages")
	errIDReused  = errors.New("packet id reused while its message is unacknowledged")
)

// ackTimeout bounds one PUBACK write; a socket stuck longer is closed.
const ackTimeout = 5 * time.Second

// acker sends one connection's PUBACKs in the order the publishes arrived, as
// MQTT requires, each only once its message is settled (stored, refused, or
// needing no storage). It is the "ack sequencer" of DESIGN decision 8.
type acker struct {
	b  *Broker
	cl *mqtt.Client

	mu        sync.Mutex
	queue     []*pendingAck // arrival order
	ids       map[uint16]*pendingAck
	bytes     int
	scheduled bool // in b.ackReady or being written
	closed    bool
}

type pendingAck struct {
	id   uint16
	size int
	done bool
	code byte
}

func newAcker(b *Broker, cl *mqtt.Client) *acker {
	return &acker{b: b, cl: cl, ids: map[uint16]*pendingAck{}}
}

// admit registers a QoS 1 publish as unacknowledged. It refuses (with the
// reason to disconnect) a non-DUP reuse of a pending packet id and a client or
// hub over its budget; dup reports a redelivery of a message still pending,
// which needs no second PUBACK.
func (a *acker) admit(id uint16, isDup bool, size int) (p *pendingAck, dup bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.ids[id]; ok {
		if isDup {
			return nil, true, nil
		}
		return nil, false, errIDReused
	}
	if len(a.queue) >= a.b.cfg.MaxUnacked || a.bytes+size > a.b.cfg.MaxUnackedBytes ||
		a.b.unackedBytes.Load()+int64(size) > a.b.cfg.MaxUnackedTotalBytes {
		return nil, false, errOverQuota
	}
	p = &pendingAck{id: id, size: size}
	a.queue = append(a.queue, p)
	a.ids[id] = p
	a.bytes += size
	a.b.unackedBytes.Add(int64(size))
	a.b.m.unacked.Inc()
	return p, false, nil
}

// settle marks a message done; the PUBACKs that became sendable go out on an
// ack writer goroutine, never on the caller's (the commit path).
func (a *acker) settle(p *pendingAck, code byte) {
	a.mu.Lock()
	p.done, p.code = true, code
	schedule := !a.closed && !a.scheduled && len(a.queue) > 0 && a.queue[0].done
	if schedule {
		a.scheduled = true
	}
	a.mu.Unlock()
	if schedule {
		a.b.ackReady <- a
	}
}

// ready takes the settled prefix of the queue.
func (a *acker) ready() []*pendingAck {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for n < len(a.queue) && a.queue[n].done {
		n++
	}
	out := a.queue[:n:n]
	a.queue = a.queue[n:]
	for _, p := range out {
		delete(a.ids, p.id)
		a.release(p)
	}
	if n == 0 || a.closed {
		a.scheduled = false
		if a.closed {
			return nil
		}
	}
	return out
}

func (a *acker) release(p *pendingAck) {
	a.bytes -= p.size
	a.b.unackedBytes.Add(-int64(p.size))
	a.b.m.unacked.Dec()
}

// close drops what is still pending: those messages stay unacknowledged and
// the locker resends them after it reconnects.
func (a *acker) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	for _, p := range a.queue {
		a.release(p)
		a.b.m.acksWithheld.Inc()
	}
	a.queue, a.ids = nil, nil
}

// writeAcks is an ack writer: it sends the ready PUBACKs of one connection at
// a time, in order, each write guarded by a watchdog (mochi's read loop keeps
// resetting the socket's deadlines, so a deadline of ours would not hold).
func (b *Broker) writeAcks() {
	defer b.ackWriters.Done()
	for {
		var a *acker
		select {
		case a = <-b.ackReady:
		case <-b.stopAcks:
			return
		}
		for {
			batch := a.ready()
			if len(batch) == 0 {
				break
			}
			v5 := a.cl.Properties.ProtocolVersion == 5
			watchdog := time.AfterFunc(ackTimeout, func() { a.cl.Stop(errAckStuck) })
			for _, p := range batch {
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: p.id}
				if v5 {
					pk.ReasonCode = p.code
				}
				if err := a.cl.WritePacket(pk); err != nil {
					break
				}
				b.m.acksSent.Inc()
			}
			watchdog.Stop()
		}
	}
}

// Done settles a device message: nil when it is durable (or needs no
// storage), ErrInvalid (wrapped) to refuse it, ErrOverloaded to withhold the
// PUBACK and disconnect. Call it exactly once, from any goroutine.
func (m Message) Done(err error) {
	if m.done != nil {
		m.done(err)
	}
}
