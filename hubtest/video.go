package hubtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// Viewer is a WHEP player made with pion: it offers to receive video,
// decodes VP8 frames and counts them.
type Viewer struct {
	PC        *webrtc.PeerConnection
	UDP       net.PacketConn // its own ICE socket: closing it makes the viewer vanish without a word
	Offer     string
	Location  string // the WHEP resource, after a 201
	Frames    atomic.Int64
	Keyframes atomic.Int64
	Bytes     atomic.Int64
}

// NewViewer makes a viewer on loopback and its SDP offer (ICE gathered).
func NewViewer(t testing.TB) *Viewer {
	t.Helper()
	v, err := DialViewer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// DialViewer is NewViewer for a goroutine that is not a test's: the caller
// closes the viewer.
func DialViewer() (*Viewer, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// Room for a keyframe's burst when many viewers share a process
	// (benchmarks): the default 208 KiB overflows.
	_ = udp.(*net.UDPConn).SetReadBuffer(4 << 20)
	var se webrtc.SettingEngine
	se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, udp))
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		_ = udp.Close()
		return nil, err
	}
	v := &Viewer{PC: pc, UDP: udp}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		v.Close()
		return nil, err
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		sb := samplebuilder.New(64, &codecs.VP8Packet{}, 90000)
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			v.Bytes.Add(int64(len(p.Payload)))
			sb.Push(p)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				v.Frames.Add(1)
				if len(s.Data) > 0 && s.Data[0]&1 == 0 {
					v.Keyframes.Add(1)
				}
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		v.Close()
		return nil, err
	}
	g := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		v.Close()
		return nil, err
	}
	<-g
	v.Offer = pc.LocalDescription().SDP
	return v, nil
}

// Close ends the viewer's peer connection and socket.
func (v *Viewer) Close() {
	_ = v.PC.Close()
	_ = v.UDP.Close()
}

// WHEP posts the viewer's offer to url with a bearer token. On 201 it applies
// the answer and keeps the Location; it returns the status and body.
func (v *Viewer) WHEP(t testing.TB, url, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, body, err := v.Post(ctx, url, token)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// Post is WHEP with the error returned: a transport failure, an answer
// that is not SDP or that the viewer cannot apply.
func (v *Viewer) Post(ctx context.Context, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(v.Offer))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated {
		if ct := resp.Header.Get("Content-Type"); ct != "application/sdp" {
			return resp.StatusCode, string(body), fmt.Errorf("WHEP answer with Content-Type %q", ct)
		}
		v.Location = resp.Header.Get("Location")
		if err := v.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
			return resp.StatusCode, string(body), fmt.Errorf("the hub's answer: %w", err)
		}
	}
	return resp.StatusCode, string(body), nil
}

// Leave deletes the viewer's WHEP resource on the hub at base (http://host:port).
func (v *Viewer) Leave(t testing.TB, base, token string) int {
	t.Helper()
	status, err := v.Delete(context.Background(), base, token)
	if err != nil {
		t.Fatal(err)
	}
	return status
}

// Delete is Leave with the error returned.
func (v *Viewer) Delete(ctx context.Context, base, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "DELETE", base+v.Location, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// String names the viewer's counts.
func (v *Viewer) String() string {
	return fmt.Sprintf("%d frames (%d keyframes), %d bytes", v.Frames.Load(), v.Keyframes.Load(), v.Bytes.Load())
}
