package lockersim

import (
	"errors"
	"time"
)

// ErrQueueFull is returned when a locker's outbox holds its maximum of
// unacknowledged QoS 1 messages: the new message is not queued (the oldest are
// kept, since they are what the hub is missing first) and is counted as dropped.
var ErrQueueFull = errors.New("outbox full")

// outMsg is one QoS 1 message kept until its PUBACK. Payload never changes:
// after a reconnect it is republished byte for byte (same boot, seq, ts).
type outMsg struct {
	topic   string
	payload []byte
	id      uint16    // packet id on the current connection; 0 = not sent on it yet
	sentAt  time.Time // when sent on the current connection
	resends int       // how many connections it was sent on before this one
}

// outbox is a locker's bounded FIFO of unacknowledged QoS 1 messages. It is not
// safe for concurrent use: the locker's mutex guards it.
//
// On every new connection all messages count as unsent and are sent again in
// their original order, at most window at a time (the server's Receive Maximum
// and our own --inflight bound); each PUBACK removes its message and lets the next one go.
type outbox struct {
	limit    int
	msgs     []*outMsg // oldest first
	byID     map[uint16]*outMsg
	window   int
	inflight int
	nextID   uint16
	online   bool
}

func newOutbox(limit int) *outbox {
	return &outbox{limit: max(limit, 1), byID: map[uint16]*outMsg{}}
}

// add queues a message. It fails with ErrQueueFull when the outbox is at its limit.
func (o *outbox) add(topic string, payload []byte) error {
	if len(o.msgs) >= o.limit {
		return ErrQueueFull
	}
	o.msgs = append(o.msgs, &outMsg{topic: topic, payload: payload})
	return nil
}

// connected starts a connection with the given send window: every queued
// message is unsent on it. It returns how many messages were sent on an
// earlier connection and will now be republished.
func (o *outbox) connected(window int) int {
	o.disconnected()
	o.online = true
	o.window = max(window, 1)
	n := 0
	for _, m := range o.msgs {
		if m.resends > 0 {
			n++
		}
	}
	return n
}

// disconnected forgets the connection: nothing is in flight any more.
func (o *outbox) disconnected() {
	o.online = false
	o.inflight = 0
	clear(o.byID)
	for _, m := range o.msgs {
		if m.id != 0 {
			m.resends++
		}
		m.id = 0
		m.sentAt = time.Time{}
	}
}

// discard drops every queued message (the --no-republish fault) and returns how many.
func (o *outbox) discard() int {
	n := len(o.msgs)
	clear(o.msgs)
	o.msgs = o.msgs[:0]
	clear(o.byID)
	o.inflight = 0
	return n
}

// toSend returns the messages to send now, oldest first, with packet ids
// assigned and marked as sent at now. The caller writes them in this order.
func (o *outbox) toSend(now time.Time) []*outMsg {
	if !o.online {
		return nil
	}
	var out []*outMsg
	for _, m := range o.msgs {
		if o.inflight >= o.window {
			break
		}
		if m.id != 0 {
			continue
		}
		m.id = o.allocID()
		m.sentAt = now
		o.byID[m.id] = m
		o.inflight++
		out = append(out, m)
	}
	return out
}

// allocID returns the next packet id not in flight (1–65535).
func (o *outbox) allocID() uint16 {
	for {
		o.nextID++
		if o.nextID == 0 {
			o.nextID = 1
		}
		if _, used := o.byID[o.nextID]; !used {
			return o.nextID
		}
	}
}

// unsend marks m as not sent (its write failed or it will go on the next connection).
func (o *outbox) unsend(m *outMsg) {
	if m.id == 0 {
		return
	}
	delete(o.byID, m.id)
	m.id = 0
	m.sentAt = time.Time{}
	o.inflight--
}

// acked removes the message with this packet id. It reports false for an id
// not in flight (a stray or duplicate PUBACK).
func (o *outbox) acked(id uint16) (*outMsg, bool) {
	m, ok := o.byID[id]
	if !ok {
		return nil, false
	}
	delete(o.byID, id)
	o.inflight--
	for i, x := range o.msgs {
		if x == m {
			if i == 0 {
				o.msgs[0] = nil
				o.msgs = o.msgs[1:]
			} else {
				copy(o.msgs[i:], o.msgs[i+1:])
				o.msgs[len(o.msgs)-1] = nil
				o.msgs = o.msgs[:len(o.msgs)-1]
			}
			break
		}
	}
	return m, true
}

// oldestInFlight returns when the oldest message in flight was sent (zero if none).
func (o *outbox) oldestInFlight() time.Time {
	var t time.Time
	for _, m := range o.msgs {
		if m.id != 0 && (t.IsZero() || m.sentAt.Before(t)) {
			t = m.sentAt
		}
	}
	return t
}

func (o *outbox) len() int { return len(o.msgs) }
