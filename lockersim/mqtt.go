package lockersim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// This file is a small MQTT 3.1.1 / 5 client on top of mochi's packet codec.
// It does what a locker needs and nothing more: CONNECT with a clean session
// (MQTT 5: clean start, session expiry 0), no will, SUBSCRIBE at connect time,
// QoS 0 and 1 publishes, receiving QoS 0 (and acknowledging QoS 1) publishes,
// and keepalive with PINGREQ. One goroutine reads (the caller's, in ReadLoop);
// writes are synchronous under a mutex with a deadline; the keepalive runs on a
// runtime timer (no goroutine while it waits).

// Protocol versions.
const (
	MQTT311 byte = 4
	MQTT5   byte = 5
)

// Limits of the client.
const (
	readBufferSize     = 512       // bufio size per connection
	maxIncomingPacket  = 256 << 10 // a larger packet from the server is a protocol error
	defaultWriteTimout = 10 * time.Second
)

// ClientOptions configure one connection.
type ClientOptions struct {
	Addr      string        // host:port
	TLS       *tls.Config   // nil: plain TCP
	ClientID  string        // also the certificate CN for lockers
	Version   byte          // MQTT311 or MQTT5 (0 means MQTT5)
	Keepalive time.Duration // 0 disables PINGREQ; the server's Server Keep Alive wins (MQTT 5)
	// Subscribe lists filters subscribed (QoS 0) right after the CONNACK, before
	// Connect returns.
	Subscribe []string
	// ConnectTimeout bounds dial, TLS handshake, CONNACK and SUBACK (default 10 s).
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write (default 10 s); a write that times out closes the connection.
	WriteTimeout time.Duration

	// OnMessage is called in the reading goroutine for every PUBLISH received.
	// payload is valid only during the call.
	OnMessage func(topic string, payload []byte)
	// OnPuback is called in the reading goroutine for every PUBACK (reason 0
	// for MQTT 3.1.1).
	OnPuback func(packetID uint16, reason byte)
}

// ConnackInfo is what the server told us in the CONNACK.
type ConnackInfo struct {
	SessionPresent    bool
	ReceiveMaximum    uint16        // MQTT 5; 65535 when absent
	MaximumQoS        byte          // MQTT 5; 1 when not said (we never use 2)
	MaximumPacketSize uint32        // MQTT 5; 0 when unlimited
	Keepalive         time.Duration // what is in effect (Server Keep Alive wins)
}

// ConnackError is a refused CONNECT.
type ConnackError struct {
	Version byte
	Code    byte
}

func (e *ConnackError) Error() string {
	return fmt.Sprintf("connection refused: %s (0x%02X)", connackReason(e.Version, e.Code), e.Code)
}

// DisconnectError is a DISCONNECT sent by the server (MQTT 5).
type DisconnectError struct {
	Code   byte
	Reason string // the Reason String property, if any
}

func (e *DisconnectError) Error() string {
	s := fmt.Sprintf("disconnected by server: %s (0x%02X)", reasonName(e.Code), e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// ErrClosed is returned by writes on a closed client and by ReadLoop after Close.
var ErrClosed = errors.New("mqtt: connection closed")

// Client is one MQTT connection.
type Client struct {
	conn      net.Conn
	br        *bufio.Reader
	version   byte
	opts      ClientOptions
	info      ConnackInfo
	keepalive time.Duration

	wmu       sync.Mutex // serialises writes
	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  atomic.Pointer[error]

	lastWrite atomic.Int64 // unix nanoseconds
	lastRead  atomic.Int64
	pingSent  atomic.Int64 // unix nanoseconds of an unanswered PINGREQ, 0 if none
	kaMu      sync.Mutex
	kaTimer   *time.Timer // guarded by kaMu
	subID     uint16
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Connect dials, sends CONNECT, waits for the CONNACK and subscribes to
// opts.Subscribe. A refusal is a *ConnackError. With TLS 1.3 the server's
// refusal of our client certificate arrives on the first read, that is while
// waiting for the CONNACK: the error then says so.
func Connect(ctx context.Context, opts ClientOptions) (*Client, error) {
	if opts.Version == 0 {
		opts.Version = MQTT5
	}
	if opts.Version != MQTT311 && opts.Version != MQTT5 {
		return nil, fmt.Errorf("mqtt: unsupported protocol version %d (use 4 or 5)", opts.Version)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = defaultWriteTimout
	}
	ctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()

	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt: dial %s: %w", opts.Addr, err)
	}
	if opts.TLS != nil {
		tc := tls.Client(conn, opts.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("mqtt: TLS handshake with %s: %w", opts.Addr, err)
		}
		conn = tc
	}
	c := &Client{
		conn:    conn,
		br:      bufio.NewReaderSize(conn, readBufferSize),
		version: opts.Version,
		opts:    opts,
	}
	// Until Connect returns, the context bounds every read and write.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := c.handshake(); err != nil {
		conn.Close()
		if ctx.Err() != nil && !isRefusal(err) {
			return nil, fmt.Errorf("mqtt: connect to %s: %w (%v)", opts.Addr, ctx.Err(), err)
		}
		return nil, fmt.Errorf("mqtt: connect to %s: %w", opts.Addr, err)
	}
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("mqtt: connect to %s: %w", opts.Addr, ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	now := time.Now().UnixNano()
	c.lastRead.Store(now)
	c.lastWrite.Store(now)
	if c.keepalive > 0 {
		c.kaMu.Lock()
		c.kaTimer = time.AfterFunc(c.keepalive/2, c.keepaliveTick)
		c.kaMu.Unlock()
	}
	return c, nil
}

func isRefusal(err error) bool {
	var ce *ConnackError
	return errors.As(err, &ce)
}

// handshake sends CONNECT, reads CONNACK and subscribes.
func (c *Client) handshake() error {
	ka := c.opts.Keepalive
	kaSec := uint16(0)
	if ka > 0 {
		kaSec = uint16(min(max(ka/time.Second, 1), 65535))
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: c.version,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            true, // 3.1.1 clean session; 5 clean start (session expiry 0: not sent, the default)
			ClientIdentifier: c.opts.ClientID,
			Keepalive:        kaSec,
		},
	}
	if c.version == MQTT5 {
		pk.Properties.MaximumPacketSize = maxIncomingPacket
		pk.Properties.ReceiveMaximum = 64 // we take only QoS 0 from the hub; bounded anyway
	}
	if err := c.writePacket(&pk, (*packets.Packet).ConnectEncode); err != nil {
		return err
	}
	ack, err := c.readPacket()
	if err != nil {
		return readErr("reading CONNACK", err)
	}
	if ack.FixedHeader.Type != packets.Connack {
		return fmt.Errorf("expected CONNACK, got %s", packetName(ack.FixedHeader.Type))
	}
	if ack.ReasonCode != 0 {
		return &ConnackError{Version: c.version, Code: ack.ReasonCode}
	}
	c.info = ConnackInfo{SessionPresent: ack.SessionPresent, ReceiveMaximum: 65535, MaximumQoS: 1}
	c.keepalive = time.Duration(kaSec) * time.Second
	if c.version == MQTT5 {
		p := ack.Properties
		if p.ReceiveMaximum > 0 {
			c.info.ReceiveMaximum = p.ReceiveMaximum
		}
		if p.MaximumQosFlag {
			c.info.MaximumQoS = p.MaximumQos
		}
		c.info.MaximumPacketSize = p.MaximumPacketSize
		if p.ServerKeepAliveFlag {
			c.keepalive = time.Duration(p.ServerKeepAlive) * time.Second
		}
	}
	c.info.Keepalive = c.keepalive
	if len(c.opts.Subscribe) == 0 {
		return nil
	}
	c.subID = 1
	sub := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		ProtocolVersion: c.version,
		PacketID:        c.subID,
	}
	for _, f := range c.opts.Subscribe {
		sub.Filters = append(sub.Filters, packets.Subscription{Filter: f, Qos: 0})
	}
	if err := c.writePacket(&sub, (*packets.Packet).SubscribeEncode); err != nil {
		return err
	}
	// A server may send publishes before the SUBACK: hand them on.
	for {
		pk, err := c.readPacket()
		if err != nil {
			return readErr("reading SUBACK", err)
		}
		if pk.FixedHeader.Type != packets.Suback {
			if err := c.dispatch(&pk); err != nil {
				return err
			}
			continue
		}
		if pk.PacketID != c.subID {
			return fmt.Errorf("SUBACK for packet %d, expected %d", pk.PacketID, c.subID)
		}
		if len(pk.ReasonCodes) != len(c.opts.Subscribe) {
			return fmt.Errorf("SUBACK has %d reason codes for %d filters", len(pk.ReasonCodes), len(c.opts.Subscribe))
		}
		for i, rc := range pk.ReasonCodes {
			if rc >= 0x80 {
				return fmt.Errorf("subscription to %q refused: %s (0x%02X)", c.opts.Subscribe[i], reasonName(rc), rc)
			}
		}
		return nil
	}
}

// readErr explains an error on a read during the connect phase. With TLS 1.3
// the server checks the client certificate after the client's handshake has
// completed, so a refusal arrives here as a TLS alert.
func readErr(what string, err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return fmt.Errorf("%s: the server refused the TLS connection (with TLS 1.3 a refused client certificate shows here): %w", what, err)
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: the server closed the connection: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Info returns what the CONNACK said.
func (c *Client) Info() ConnackInfo { return c.info }

// Version returns the protocol version in use.
func (c *Client) Version() byte { return c.version }

// ReadLoop reads packets until the connection fails or is closed, and returns
// why. It must run in exactly one goroutine, after Connect.
func (c *Client) ReadLoop() error {
	for {
		if c.keepalive > 0 {
			// A live server answers our PINGREQ within the keepalive; 1.5 × keepalive of
			// silence means the link is dead.
			c.conn.SetReadDeadline(time.Now().Add(c.keepalive * 3 / 2))
		}
		pk, err := c.readPacket()
		if err != nil {
			if c.closed.Load() {
				if p := c.closeErr.Load(); p != nil {
					return *p
				}
				return ErrClosed
			}
			c.closeWith(err)
			return err
		}
		if err := c.dispatch(&pk); err != nil {
			c.closeWith(err)
			return err
		}
	}
}

func (c *Client) dispatch(pk *packets.Packet) error {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Qos > 1 {
			return fmt.Errorf("PUBLISH with QoS %d: not supported", pk.FixedHeader.Qos)
		}
		if c.opts.OnMessage != nil {
			c.opts.OnMessage(pk.TopicName, pk.Payload)
		}
		if pk.FixedHeader.Qos == 1 {
			ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: c.version, PacketID: pk.PacketID}
			return c.writePacket(&ack, (*packets.Packet).PubackEncode)
		}
	case packets.Puback:
		if c.opts.OnPuback != nil {
			c.opts.OnPuback(pk.PacketID, pk.ReasonCode)
		}
	case packets.Pingresp:
		c.pingSent.Store(0)
	case packets.Disconnect:
		return &DisconnectError{Code: pk.ReasonCode, Reason: pk.Properties.ReasonString}
	case packets.Suback:
		// a late SUBACK cannot happen (we subscribe once, before ReadLoop); ignore
	default:
		return fmt.Errorf("unexpected %s packet from the server", packetName(pk.FixedHeader.Type))
	}
	return nil
}

// readPacket reads one packet from the connection.
func (c *Client) readPacket() (packets.Packet, error) {
	hb, err := c.br.ReadByte()
	if err != nil {
		return packets.Packet{}, err
	}
	var fh packets.FixedHeader
	if err := fh.Decode(hb); err != nil {
		return packets.Packet{}, fmt.Errorf("malformed fixed header 0x%02X: %w", hb, err)
	}
	n, _, err := packets.DecodeLength(c.br)
	if err != nil {
		return packets.Packet{}, fmt.Errorf("reading remaining length: %w", err)
	}
	if n > maxIncomingPacket {
		return packets.Packet{}, fmt.Errorf("%s packet of %d bytes exceeds our maximum of %d", packetName(fh.Type), n, maxIncomingPacket)
	}
	fh.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return packets.Packet{}, err
	}
	c.lastRead.Store(time.Now().UnixNano())
	return decodeBody(c.version, fh, body)
}

// DecodePacket decodes one whole packet (fixed header, length, body) as the
// server would send it to a client of the given version. It is what the
// reader does, on a byte slice: used by the fuzz test.
func DecodePacket(version byte, data []byte) (packets.Packet, error) {
	if len(data) < 2 {
		return packets.Packet{}, errors.New("short packet")
	}
	var fh packets.FixedHeader
	if err := fh.Decode(data[0]); err != nil {
		return packets.Packet{}, err
	}
	r := bytes.NewReader(data[1:])
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		return packets.Packet{}, err
	}
	if n > maxIncomingPacket || n != r.Len() {
		return packets.Packet{}, fmt.Errorf("remaining length %d, have %d bytes", n, r.Len())
	}
	fh.Remaining = n
	return decodeBody(version, fh, data[len(data)-n:])
}

// decodeBody decodes the variable header and payload of a packet a server sends
// to a client. The codec is third-party: a panic in it on a malformed packet is
// turned into an error, not a crash of the simulator.
func decodeBody(version byte, fh packets.FixedHeader, body []byte) (pk packets.Packet, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed %s packet: decoder panic: %v", packetName(fh.Type), r)
		}
	}()
	pk = packets.Packet{FixedHeader: fh, ProtocolVersion: version}
	switch fh.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
		if err == nil && pk.TopicName == "" {
			err = errors.New("PUBLISH without topic name (topic aliases are not supported)")
		}
		if err == nil {
			// The codec's strings alias the body; the body is ours (a fresh slice per packet).
			pk.TopicName = string([]byte(pk.TopicName))
		}
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Pingresp:
		err = pk.PingrespDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	default:
		err = fmt.Errorf("unexpected %s packet from the server", packetName(fh.Type))
	}
	if err != nil {
		return packets.Packet{}, fmt.Errorf("malformed %s packet: %w", packetName(fh.Type), err)
	}
	return pk, nil
}

// Publish sends a PUBLISH. For QoS 1 the caller chooses a packet ID (1–65535)
// not in flight on this connection and waits for OnPuback.
func (c *Client) Publish(topic string, payload []byte, qos byte, packetID uint16) error {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: qos},
		ProtocolVersion: c.version,
		TopicName:       topic,
		Payload:         payload,
	}
	if qos > 0 {
		if packetID == 0 {
			return errors.New("mqtt: QoS 1 publish needs a packet id")
		}
		pk.PacketID = packetID
	}
	return c.writePacket(&pk, (*packets.Packet).PublishEncode)
}

// writePacket encodes and writes one packet under the write lock. A failed
// write closes the connection (its state is unknown).
func (c *Client) writePacket(pk *packets.Packet, encode func(*packets.Packet, *bytes.Buffer) error) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			bufPool.Put(buf)
		}
	}()
	if err := encode(pk, buf); err != nil {
		return fmt.Errorf("mqtt: encoding %s: %w", packetName(pk.FixedHeader.Type), err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	wt := c.opts.WriteTimeout
	if wt <= 0 {
		wt = defaultWriteTimout
	}
	c.conn.SetWriteDeadline(time.Now().Add(wt))
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		err = fmt.Errorf("mqtt: writing %s: %w", packetName(pk.FixedHeader.Type), err)
		c.closeWith(err)
		return err
	}
	c.lastWrite.Store(time.Now().UnixNano())
	return nil
}

// keepaliveTick runs on a runtime timer every keepalive/2: it sends PINGREQ
// when we have been silent or the server has, and closes a connection whose
// PINGREQ went unanswered for a whole keepalive.
func (c *Client) keepaliveTick() {
	if c.closed.Load() {
		return
	}
	now := time.Now().UnixNano()
	half := int64(c.keepalive / 2)
	if ps := c.pingSent.Load(); ps != 0 && now-ps > int64(c.keepalive) {
		c.closeWith(fmt.Errorf("mqtt: no PINGRESP within %s", c.keepalive))
		return
	}
	if c.pingSent.Load() == 0 && (now-c.lastWrite.Load() >= half || now-c.lastRead.Load() >= half) {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}, ProtocolVersion: c.version}
		c.pingSent.Store(now)
		if err := c.writePacket(&pk, (*packets.Packet).PingreqEncode); err != nil {
			return
		}
	}
	c.kaMu.Lock()
	if !c.closed.Load() {
		c.kaTimer.Reset(c.keepalive / 2)
	}
	c.kaMu.Unlock()
}

// Disconnect sends DISCONNECT (best effort, short deadline) and closes.
func (c *Client) Disconnect() {
	c.wmu.Lock()
	first := c.markClosed(ErrClosed)
	if first {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: c.version}
		buf := new(bytes.Buffer)
		if pk.DisconnectEncode(buf) == nil {
			c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.conn.Write(buf.Bytes())
		}
	}
	c.wmu.Unlock()
	if first {
		c.finishClose()
	}
}

// Close closes the connection without DISCONNECT (as a lost link would).
func (c *Client) Close() { c.closeWith(ErrClosed) }

// CloseWith closes the connection; ReadLoop then returns err.
func (c *Client) CloseWith(err error) { c.closeWith(err) }

func (c *Client) closeWith(err error) {
	if c.markClosed(err) {
		c.finishClose()
	}
}

// markClosed records why the connection closes; only the first call counts
// (and reports true). From then on writes fail and ReadLoop returns err.
func (c *Client) markClosed(err error) bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeErr.Store(&err)
		c.closed.Store(true)
	})
	return first
}

func (c *Client) finishClose() {
	c.kaMu.Lock()
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	c.kaMu.Unlock()
	c.conn.Close()
}

// Closed reports whether the connection has been closed.
func (c *Client) Closed() bool { return c.closed.Load() }

func packetName(t byte) string {
	if n, ok := packets.PacketNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}

// connackReason names a CONNACK return/reason code.
func connackReason(version, code byte) string {
	if version == MQTT311 {
		switch code {
		case 0x01:
			return "unacceptable protocol version"
		case 0x02:
			return "identifier rejected"
		case 0x03:
			return "server unavailable"
		case 0x04:
			return "bad user name or password"
		case 0x05:
			return "not authorized"
		}
		return "unknown return code"
	}
	return reasonName(code)
}

// reasonName names an MQTT 5 reason code.
func reasonName(code byte) string {
	switch code {
	case 0x00:
		return "success"
	case 0x04:
		return "disconnect with will message"
	case 0x10:
		return "no matching subscribers"
	case 0x80:
		return "unspecified error"
	case 0x81:
		return "malformed packet"
	case 0x82:
		return "protocol error"
	case 0x83:
		return "implementation specific error"
	case 0x84:
		return "unsupported protocol version"
	case 0x85:
		return "client identifier not valid"
	case 0x86:
		return "bad user name or password"
	case 0x87:
		return "not authorized"
	case 0x88:
		return "server unavailable"
	case 0x89:
		return "server busy"
	case 0x8A:
		return "banned"
	case 0x8B:
		return "server shutting down"
	case 0x8C:
		return "bad authentication method"
	case 0x8D:
		return "keep alive timeout"
	case 0x8E:
		return "session taken over"
	case 0x8F:
		return "topic filter invalid"
	case 0x90:
		return "topic name invalid"
	case 0x91:
		return "packet identifier in use"
	case 0x92:
		return "packet identifier not found"
	case 0x93:
		return "receive maximum exceeded"
	case 0x94:
		return "topic alias invalid"
	case 0x95:
		return "packet too large"
	case 0x96:
		return "message rate too high"
	case 0x97:
		return "quota exceeded"
	case 0x98:
		return "administrative action"
	case 0x99:
		return "payload format invalid"
	case 0x9A:
		return "retain not supported"
	case 0x9B:
		return "QoS not supported"
	case 0x9C:
		return "use another server"
	case 0x9D:
		return "server moved"
	case 0x9E:
		return "shared subscriptions not supported"
	case 0x9F:
		return "connection rate exceeded"
	case 0xA0:
		return "maximum connect time"
	case 0xA1:
		return "subscription identifiers not supported"
	case 0xA2:
		return "wildcard subscriptions not supported"
	}
	return "unknown reason code"
}
