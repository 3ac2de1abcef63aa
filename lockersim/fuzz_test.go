package lockersim

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lockerhub/lockerhub/protocol"
	"github.com/mochi-mqtt/server/v2/packets"
)

// encodeForFuzz encodes a packet as a server would send it.
func encodeForFuzz(pk packets.Packet) []byte {
	var buf bytes.Buffer
	switch pk.FixedHeader.Type {
	case packets.Connack:
		pk.ConnackEncode(&buf)
	case packets.Publish:
		pk.PublishEncode(&buf)
	case packets.Puback:
		pk.PubackEncode(&buf)
	case packets.Suback:
		pk.SubackEncode(&buf)
	case packets.Pingresp:
		pk.PingrespEncode(&buf)
	case packets.Disconnect:
		pk.DisconnectEncode(&buf)
	}
	return buf.Bytes()
}

// FuzzDecodePacket feeds the client's decoder what a hostile or broken
// server could send. It must never panic, and what it accepts must be sane.
func FuzzDecodePacket(f *testing.F) {
	for _, v := range []byte{MQTT311, MQTT5} {
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: v, ReasonCode: 0}
		ack.Properties.ReceiveMaximum = 64
		ack.Properties.ServerKeepAlive, ack.Properties.ServerKeepAliveFlag = 30, true
		f.Add(v, encodeForFuzz(ack))
		pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: v,
			TopicName: "lockers/L1/rpc/req", Payload: []byte(`{"id":"c-1","method":"cell.open","params":{"cell":"A01"}}`)}
		f.Add(v, encodeForFuzz(pub))
		pub.FixedHeader.Qos, pub.PacketID = 1, 9
		pub.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
		f.Add(v, encodeForFuzz(pub))
		f.Add(v, encodeForFuzz(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: v, PacketID: 3, ReasonCode: 0x99}))
		f.Add(v, encodeForFuzz(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: v, PacketID: 1, ReasonCodes: []byte{0, 0x87}}))
		f.Add(v, encodeForFuzz(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}}))
		d := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: v, ReasonCode: 0x8E}
		d.Properties.ReasonString = "taken over"
		f.Add(v, encodeForFuzz(d))
	}
	f.Add(MQTT5, []byte{0x30, 0x05, 0x00, 0x01, 'a', 0x07, 0x00})
	f.Add(MQTT5, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, version byte, data []byte) {
		if version != MQTT311 {
			version = MQTT5
		}
		pk, err := DecodePacket(version, data)
		if err != nil {
			if strings.Contains(err.Error(), "decoder panic") {
				// Caught, so the simulator survives; but the codec should not panic.
				t.Fatalf("mochi's codec panicked on %x: %v", data, err)
			}
			return
		}
		if pk.FixedHeader.Type == packets.Publish {
			if pk.TopicName == "" || !utf8.ValidString(pk.TopicName) {
				t.Fatalf("accepted a PUBLISH with topic %q", pk.TopicName)
			}
			if len(pk.Payload) > len(data) {
				t.Fatal("payload longer than the packet")
			}
		}
	})
}

// FuzzLockerMessage feeds a locker arbitrary rpc/req, ask/res and desired
// payloads. It must never panic; an rpc/req with an id is always answered
// with a response carrying that id, and everything the locker queues is valid JSON.
func FuzzLockerMessage(f *testing.F) {
	f.Add(uint8(0), []byte(`{"id":"c-81","method":"cell.open","params":{"cell":"A01"},"key":"c-81","not_after":99999999999999}`))
	f.Add(uint8(0), []byte(`{"id":"c-1","method":"cell.open","params":{"cell":"A01"},"key":"c-1","not_after":1}`))
	f.Add(uint8(0), []byte(`{"id":"s","method":"cell.status","params":{"cell":"A04"}}`))
	f.Add(uint8(0), []byte(`{"id":"d","method":"display.message","params":{"text":"hi","ttl_s":3}}`))
	f.Add(uint8(0), []byte(`{"id":"r","method":"locker.reboot","key":"r","not_after":99999999999999}`))
	f.Add(uint8(0), []byte(`{"id":"x","method":"ota.install","params":[1,2]}`))
	f.Add(uint8(0), []byte(`{"id":7}`))
	f.Add(uint8(0), []byte(`{"id":"q","params":"A01","method":"cell.open"}`))
	f.Add(uint8(1), []byte(`{"id":"a-1","result":{"cell":"B03"}}`))
	f.Add(uint8(2), []byte(`{"version":7,"config":{"x":1}}`))
	f.Add(uint8(2), []byte(`{"version":"7"}`))
	env := testEnv(&testing.T{}, nil)
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		env.cfg.DataDir = t.TempDir()
		l, err := newLocker(env, "L1", nil)
		if err != nil {
			t.Fatal(err)
		}
		kind := []protocol.Kind{protocol.KindRPCReq, protocol.KindAskRes, protocol.KindDesired}[int(which)%3]
		l.onMessage(protocol.Topic("L1", kind), payload)
		l.onMessage(protocol.Topic("L1", kind), payload) // a repeat must be safe too
		l.mu.Lock()
		msgs := append([]*outMsg(nil), l.out.msgs...)
		l.mu.Unlock()
		var responses []protocol.Response
		for _, m := range msgs {
			if !json.Valid(m.payload) {
				t.Fatalf("queued invalid JSON on %s: %q", m.topic, m.payload)
			}
			if strings.HasSuffix(m.topic, "/rpc/res") {
				var res protocol.Response
				if err := json.Unmarshal(m.payload, &res); err != nil {
					t.Fatal(err)
				}
				if (res.Error == nil) == (len(res.Result) == 0) {
					t.Fatalf("a response has exactly one of result and error: %s", m.payload)
				}
				responses = append(responses, res)
			}
		}
		if kind != protocol.KindRPCReq {
			if len(responses) > 0 {
				t.Fatal("answered something that was not a request")
			}
			return
		}
		req, _ := parseRequest(payload)
		if req.ID == "" {
			if len(responses) != 0 {
				t.Fatalf("answered a request without id: %q", payload)
			}
			return
		}
		if len(responses) != 2 {
			t.Fatalf("want 2 responses (request sent twice), got %d for %q", len(responses), payload)
		}
		for _, r := range responses {
			if r.ID != req.ID {
				t.Fatalf("response id %q for request id %q", r.ID, req.ID)
			}
		}
		// A repeated key gets the first answer; only the clock passing not_after
		// in between may turn it into "expired".
		first, second := responses[0], responses[1]
		if req.Key != "" && !(second.Error != nil && second.Error.Code == protocol.ErrCodeExpired) {
			if !bytes.Equal(first.Result, second.Result) || errCode(first.Error) != errCode(second.Error) {
				t.Fatalf("a repeated key got a different answer: %+v vs %+v", first, second)
			}
		}
	})
}

func errCode(e *protocol.Error) string {
	if e == nil {
		return ""
	}
	return e.Code
}
