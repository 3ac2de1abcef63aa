package broker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/lockerhub/lockerhub/protocol"
)

// hook connects mochi to the hub: identity at CONNECT, presence, the ACL, and
// the dispatch of device publishes to their handlers.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "lockerhub" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPacketSent, mqtt.OnSubscribed,
	}, []byte{b})
}

// OnConnect checks the client ID against the certificate and the registry,
// strips any will and sets the keepalive. Refusals send their own CONNACK.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
		return b.refuse(cl, "no_certificate", packets.ErrNotAuthorized, packets.Err3NotAuthorized)
	}
	leaf := tc.ConnectionState().PeerCertificates[0]
	cn := leaf.Subject.CommonName
	if cl.ID != cn {
		b.log.Warn("CONNECT refused: client ID differs from certificate CN", "client_id", cl.ID, "cn", cn, "remote", cl.Net.Remote)
		return b.refuse(cl, "client_id_mismatch", packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid)
	}
	if err := b.ids.Authorize(cn); err != nil {
		b.log.Warn("CONNECT refused", "locker", cn, "error", err, "remote", cl.Net.Remote)
		return b.refuse(cl, "not_authorized", packets.ErrNotAuthorized, packets.Err3NotAuthorized)
	}
	if b.ids.Revoked(serialOf(leaf)) { // revoked between handshake and CONNECT
		return b.refuse(cl, "revoked", packets.ErrNotAuthorized, packets.Err3NotAuthorized)
	}
	if cl.Properties.Will.Flag != 0 || pk.Connect.WillFlag {
		// mochi publishes wills without an ACL check and on takeover; presence
		// comes from the connection itself (DESIGN decision 3).
		cl.Properties.Will = mqtt.Will{}
		b.m.willsStripped.Inc()
	}
	if cl.Properties.ProtocolVersion < 5 && !cl.Properties.Clean {
		// mochi would keep a 3.1.1 persistent session in memory for ever; lockers
		// use clean sessions (PostgreSQL, not the broker, holds what is pending).
		cl.Properties.Clean = true
		b.log.Info("persistent session requested; the session is not kept", "locker", cn)
	}
	if cl.Properties.ProtocolVersion == 5 && (cl.State.Keepalive == 0 || cl.State.Keepalive > maxKeepalive) {
		cl.State.Keepalive = defaultKeepalive
		cl.State.ServerKeepalive = true // advertised in the CONNACK
	}
	return nil
}

// OnConnectAuthenticate accepts: identity was settled by TLS and OnConnect.
func (h *hook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.b.sessionUp(cl)
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	h.b.sessionDown(cl, err)
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		if protocol.MayPublish(cl.ID, topic) {
			return true
		}
		h.b.m.aclDenied.WithLabelValues("publish").Inc()
		h.b.log.Warn("publish refused by ACL", "locker", cl.ID, "topic", topic)
		return false
	}
	if protocol.MaySubscribe(cl.ID, topic) {
		return true
	}
	h.b.m.aclDenied.WithLabelValues("subscribe").Inc()
	h.b.log.Warn("subscription refused by ACL", "locker", cl.ID, "filter", topic)
	return false
}

// OnSubscribed tells the subscription observers which hub→device kinds a
// locker now receives: the hub sends nothing to a locker before that.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if len(h.b.onSubscribed) == 0 {
		return
	}
	var kinds []protocol.Kind
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 {
			continue
		}
		for _, k := range protocol.HubKinds {
			if protocol.FilterMatches(f.Filter, protocol.Topic(cl.ID, k)) {
				kinds = append(kinds, k)
			}
		}
	}
	if len(kinds) > 0 {
		for _, fn := range h.b.onSubscribed {
			fn(cl.ID, kinds)
		}
	}
}

// OnPacketRead refuses QoS 2: the hub offers at most QoS 1 (DESIGN decision 5).
// Only ErrRejectPacket makes mochi drop the packet and end the read loop (any
// other error is ignored and the publish would be downgraded to QoS 1).
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 1 {
		h.b.log.Warn("QoS 2 publish refused; disconnecting", "locker", cl.ID, "topic", pk.TopicName)
		if cl.Properties.ProtocolVersion == 5 {
			_ = h.b.srv.DisconnectClient(cl, packets.ErrQosNotSupported)
		}
		cl.Stop(packets.ErrQosNotSupported)
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// OnPacketEncode advertises the maximum packet size in MQTT 5 CONNACKs.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == 0 && cl.Properties.ProtocolVersion == 5 {
		pk.Properties.MaximumPacketSize = h.b.cfg.MaxPacketSize
	}
	return pk
}

func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Publish {
		kind := kindLabel(pk.TopicName)
		h.b.m.messagesOut.WithLabelValues(kind).Inc()
		h.b.m.bytesOut.WithLabelValues(kind).Add(float64(len(pk.Payload)))
	}
}

// OnPublish hands a device publish to the handler of its kind. mochi forwards
// nothing and sends no PUBACK for a rejected packet, for MQTT 3.1.1 and 5
// alike; the hub acknowledges a QoS 1 message itself once its handler settles
// it (DESIGN decision 8), through the connection's ack sequencer.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // the hub's own message to a locker (Send): deliver it
	}
	b := h.b
	_, kind, _ := protocol.ParseTopic(pk.TopicName) // the ACL let only valid device topics through
	b.m.messagesIn.WithLabelValues(string(kind)).Inc()
	b.m.bytesIn.WithLabelValues(string(kind)).Add(float64(len(pk.Payload)))
	msg := Message{LockerID: cl.ID, Kind: kind, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Received: time.Now()}
	if pk.FixedHeader.Qos == 1 {
		b.mu.Lock()
		a := b.ackers[cl]
		b.mu.Unlock()
		if a == nil {
			return pk, packets.ErrRejectPacket // the session is ending
		}
		p, dup, err := a.admit(pk.PacketID, pk.FixedHeader.Dup, len(pk.Payload))
		switch {
		case dup:
			b.m.duplicatesPending.Inc() // the first copy's PUBACK covers it
			return pk, packets.ErrRejectPacket
		case errors.Is(err, errIDReused):
			b.log.Warn("packet id reused while unacknowledged; disconnecting", "locker", cl.ID, "packet_id", pk.PacketID)
			b.disconnect(cl, packets.ErrProtocolViolation, err)
			return pk, packets.ErrRejectPacket
		case err != nil:
			b.m.quotaExceeded.Inc()
			b.log.Warn("too many unacknowledged messages; disconnecting", "locker", cl.ID)
			b.disconnect(cl, packets.ErrQuotaExceeded, err)
			return pk, packets.ErrRejectPacket
		}
		msg.done = func(err error) { b.settle(cl, a, p, kind, err) }
	}
	if hd := b.handlers[kind]; hd != nil {
		hd(msg)
	} else {
		b.m.unhandled.WithLabelValues(string(kind)).Inc()
		msg.Done(nil)
	}
	return pk, packets.ErrRejectPacket
}

// settle turns a handler's verdict into the message's PUBACK.
func (b *Broker) settle(cl *mqtt.Client, a *acker, p *pendingAck, kind protocol.Kind, err error) {
	switch {
	case err == nil:
		a.settle(p, packets.CodeSuccess.Code)
	case errors.Is(err, ErrOverloaded):
		b.m.acksWithheld.Inc()
		b.disconnect(cl, packets.ErrQuotaExceeded, err)
	default:
		b.m.invalid.WithLabelValues(string(kind)).Inc()
		b.log.Warn("device message refused", "locker", cl.ID, "kind", kind, "error", err)
		a.settle(p, packets.ErrPayloadFormatInvalid.Code)
	}
}

func kindLabel(topic string) string {
	if _, k, err := protocol.ParseTopic(topic); err == nil {
		return string(k)
	}
	return "other"
}

func disconnectReason(err error) string {
	var code packets.Code
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, packets.CodeDisconnect):
		return "client_disconnect"
	case errors.Is(err, packets.ErrSessionTakenOver):
		return "taken_over"
	case errors.Is(err, packets.ErrPacketTooLarge):
		return "packet_too_large"
	case errors.Is(err, errKicked):
		return "revoked"
	case errors.Is(err, packets.ErrQosNotSupported):
		return "qos2"
	case errors.Is(err, errOverQuota), errors.Is(err, ErrOverloaded):
		return "quota_exceeded"
	case errors.Is(err, errAckStuck):
		return "ack_write_stuck"
	case errors.Is(err, errIDReused):
		return "packet_id_reused"
	case errors.Is(err, packets.ErrServerShuttingDown):
		return "shutdown"
	case errors.As(err, &ne) && ne.Timeout():
		return "keepalive_timeout"
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return "connection_closed"
	case errors.As(err, &code):
		return "protocol_error"
	}
	return "error"
}
