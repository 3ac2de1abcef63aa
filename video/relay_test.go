package video_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/video"
)

// fakeLockers answers video.start like a locker: lockersim's publisher
// loops the test clip over WebRTC. A silent locker never answers.
type fakeLockers struct {
	t      testing.TB
	api    *webrtc.API
	silent bool

	mu     sync.Mutex
	pubs   map[string]*lockersim.Publisher
	starts atomic.Int32
	stops  atomic.Int32
}

func newFakeLockers(t testing.TB) *fakeLockers {
	api, err := lockersim.NewVideoAPI(lockersim.VideoOptions{Interface: "lo", ICEFailed: 2 * time.Second})
	require.NoError(t, err)
	f := &fakeLockers{t: t, api: api, pubs: map[string]*lockersim.Publisher{}}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, p := range f.pubs {
			p.Close()
		}
	})
	return f
}

func (f *fakeLockers) Online(string) bool { return true }

func (f *fakeLockers) Call(ctx context.Context, id, method string, params, result any) error {
	switch method {
	case video.MethodStart:
		f.starts.Add(1)
		if f.silent {
			<-ctx.Done()
			return fmt.Errorf("%w: %v", video.ErrNoAnswer, ctx.Err())
		}
		p := params.(video.StartParams)
		pub, answer, err := lockersim.Publish(ctx, f.api, p.SDP, lockersim.TestClip)
		if err != nil {
			return err
		}
		f.mu.Lock()
		if old := f.pubs[id]; old != nil {
			old.Close()
		}
		f.pubs[id] = pub
		f.mu.Unlock()
		*result.(*video.StartResult) = video.StartResult{SDP: answer}
		return nil
	case video.MethodStop:
		f.stops.Add(1)
		f.mu.Lock()
		if p := f.pubs[id]; p != nil {
			p.Close()
			delete(f.pubs, id)
		}
		f.mu.Unlock()
		return nil
	}
	return errors.New("unknown method " + method)
}

func (f *fakeLockers) publisher(id string) *lockersim.Publisher {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pubs[id]
}

func testConfig() video.Config {
	return video.Config{
		UDPAddr:             "127.0.0.1:0",
		MaxViewersPerLocker: 3,
		IdleTimeout:         500 * time.Millisecond,
		StartTimeout:        5 * time.Second,
		ConnectTimeout:      5 * time.Second,
		PLIInterval:         200 * time.Millisecond,
		ICEDisconnected:     500 * time.Millisecond,
		ICEFailed:           time.Second,
	}
}

func newRelay(t testing.TB, dev video.Devices, cfg video.Config) *video.Relay {
	t.Helper()
	r, err := video.New(dev, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// testViewer is a pion viewer, as a WHEP player is.
type testViewer struct {
	pc        *webrtc.PeerConnection
	udp       net.PacketConn // its own socket: closing it makes the viewer vanish
	frames    atomic.Int64
	keyframes atomic.Int64
	done      chan struct{}
}

// newViewer makes a viewer and its offer (ICE gathered).
func newViewer(t testing.TB) (*testViewer, string) {
	t.Helper()
	m := &webrtc.MediaEngine{}
	require.NoError(t, m.RegisterDefaultCodecs())
	ir := &interceptor.Registry{}
	require.NoError(t, webrtc.RegisterDefaultInterceptors(m, ir))
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	var se webrtc.SettingEngine
	se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, udp))
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	v := &testViewer{pc: pc, udp: udp, done: make(chan struct{})}
	t.Cleanup(func() { _ = pc.Close(); _ = udp.Close() })
	_, err = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	require.NoError(t, err)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		defer close(v.done)
		sb := samplebuilder.New(64, &codecs.VP8Packet{}, 90000)
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			sb.Push(p)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				v.frames.Add(1)
				if len(s.Data) > 0 && s.Data[0]&1 == 0 {
					v.keyframes.Add(1)
				}
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	g := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(offer))
	<-g
	return v, pc.LocalDescription().SDP
}

func (v *testViewer) close() {
	_ = v.pc.Close()
	_ = v.udp.Close()
}

func (v *testViewer) answer(t testing.TB, sdp string) {
	t.Helper()
	require.NoError(t, v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}))
}

func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settledGoroutines polls until the goroutine count is at most limit.
func settledGoroutines(t testing.TB, limit int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > limit {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, want at most %d\n%s", runtime.NumGoroutine(), limit, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRelayFanOut: two pion viewers of one locker get decoded frames (and
// keyframes) through one upstream; their keyframe requests reach the locker
// rate-limited; when both leave, the upstream stops after the idle timeout
// and the locker is told video.stop. No peer connection or goroutine is
// left.
func TestRelayFanOut(t *testing.T) {
	before := runtime.NumGoroutine()
	lockers := newFakeLockers(t)
	r := newRelay(t, lockers, testConfig())
	ctx := t.Context()

	var viewers []*testViewer
	var ids []string
	for i := range 2 {
		v, offer := newViewer(t)
		res, err := r.AddViewer(ctx, "L1", offer, "test", fmt.Sprintf("user:%d", i+1))
		require.NoError(t, err)
		v.answer(t, res.Answer)
		viewers, ids = append(viewers, v), append(ids, res.ID)
	}
	require.EqualValues(t, 1, lockers.starts.Load(), "one upstream for both viewers")
	for i, v := range viewers {
		eventually(t, 10*time.Second, fmt.Sprintf("viewer %d decodes frames and a keyframe", i), func() bool {
			return v.frames.Load() >= 15 && v.keyframes.Load() >= 1
		})
	}
	st := r.Status("L1")
	require.True(t, st.Ready)
	require.Equal(t, 2, st.Viewers)
	require.Equal(t, webrtc.MimeTypeVP8, st.Codec)

	// A burst of PLIs from a viewer reaches the locker as at most a few.
	pub := lockers.publisher("L1")
	require.NotNil(t, pub)
	base := pub.KeyframeRequests.Load()
	ssrc := uint32(viewers[0].pc.GetReceivers()[0].Track().SSRC())
	for range 20 {
		require.NoError(t, viewers[0].pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}))
	}
	eventually(t, 3*time.Second, "a PLI reaches the locker", func() bool { return pub.KeyframeRequests.Load() > base })
	time.Sleep(300 * time.Millisecond)
	require.LessOrEqual(t, pub.KeyframeRequests.Load()-base, int64(3), "20 PLIs in a burst must be rate-limited")

	// A viewer is ended by its owner or by anyone-allowed (an admin: ""),
	// not by another caller.
	require.ErrorIs(t, r.RemoveViewer(ctx, "L1", ids[0], "user:2"), video.ErrNotOwner)
	require.Equal(t, 2, r.Status("L1").Viewers, "a refused DELETE ends nothing")
	require.NoError(t, r.RemoveViewer(ctx, "L1", ids[0], "user:1"))
	require.NoError(t, r.RemoveViewer(ctx, "L1", ids[1], ""))
	require.ErrorIs(t, r.RemoveViewer(ctx, "L1", ids[0], ""), video.ErrNotFound)
	require.True(t, r.Status("L1").Streaming, "the upstream stays for the idle timeout")
	eventually(t, 5*time.Second, "upstream stopped after the idle timeout", func() bool { return !r.Status("L1").Streaming })
	eventually(t, 5*time.Second, "video.stop sent", func() bool { return lockers.stops.Load() == 1 })
	eventually(t, 5*time.Second, "no peer connections", func() bool { return r.Stats().PeerConnections == 0 })

	for _, v := range viewers {
		v.close()
	}
	r.Close()
	settledGoroutines(t, before+5)
}

// TestRelayBadInput: malformed offers are refused before any peer
// connection; a locker that never answers gives a clear error and leaves
// nothing running; too many viewers are refused; a viewer that vanishes
// without closing is removed when ICE fails, and the stream goes idle.
func TestRelayBadInput(t *testing.T) {
	before := runtime.NumGoroutine()
	lockers := newFakeLockers(t)
	cfg := testConfig()
	cfg.MaxViewersPerLocker = 1
	r := newRelay(t, lockers, cfg)
	ctx := t.Context()

	for _, bad := range []string{"", "hello", "v=0\r\n", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"} {
		_, err := r.AddViewer(ctx, "L1", bad, "test", "")
		require.ErrorIs(t, err, video.ErrBadOffer, "%q", bad)
	}
	require.Equal(t, 0, r.Stats().PeerConnections)
	require.EqualValues(t, 0, lockers.starts.Load(), "a bad offer starts no stream")

	// Too many viewers.
	v1, offer := newViewer(t)
	res, err := r.AddViewer(ctx, "L1", offer, "first", "")
	require.NoError(t, err)
	v1.answer(t, res.Answer)
	v2, offer2 := newViewer(t)
	_, err = r.AddViewer(ctx, "L1", offer2, "second", "")
	require.ErrorIs(t, err, video.ErrTooManyViewers)
	v2.close()
	eventually(t, 10*time.Second, "the first viewer gets frames", func() bool { return v1.frames.Load() > 5 })

	// It vanishes: its socket closes, nothing is sent. ICE fails, it is removed.
	_ = v1.udp.Close()
	eventually(t, 10*time.Second, "the vanished viewer is removed", func() bool { return r.Status("L1").Viewers == 0 })
	eventually(t, 5*time.Second, "and the upstream stops", func() bool { return !r.Status("L1").Streaming })
	eventually(t, 5*time.Second, "no peer connections", func() bool { return r.Stats().PeerConnections == 0 })
	v1.close()

	// A locker that never answers.
	lockers.silent = true
	cfgSilent := testConfig()
	cfgSilent.StartTimeout = 700 * time.Millisecond
	r2 := newRelay(t, lockers, cfgSilent)
	v3, offer3 := newViewer(t)
	start := time.Now()
	_, err = r2.AddViewer(ctx, "L2", offer3, "test", "")
	require.ErrorIs(t, err, video.ErrNoAnswer)
	v3.close()
	require.Less(t, time.Since(start), 3*time.Second)
	eventually(t, 3*time.Second, "nothing left of the silent locker's stream", func() bool {
		return r2.Stats() == video.Stats{}
	})
	r.Close()
	r2.Close()
	settledGoroutines(t, before+8)
}

func TestValidateOffer(t *testing.T) {
	require.ErrorIs(t, video.ValidateOffer("garbage"), video.ErrBadOffer)
	_, offer := newViewer(t)
	require.NoError(t, video.ValidateOffer(offer))
}

// TestRelayCloseWhileStarting: a shutdown while a locker has not answered
// yet ends the waiting viewer with an error and leaves no peer connection.
func TestRelayCloseWhileStarting(t *testing.T) {
	before := runtime.NumGoroutine()
	lockers := newFakeLockers(t)
	lockers.silent = true
	r := newRelay(t, lockers, testConfig())
	v, offer := newViewer(t)
	errc := make(chan error, 1)
	go func() {
		_, err := r.AddViewer(context.Background(), "L9", offer, "test", "")
		errc <- err
	}()
	eventually(t, 3*time.Second, "video.start sent", func() bool { return lockers.starts.Load() == 1 })
	r.Close()
	require.Error(t, <-errc)
	require.Equal(t, video.Stats{}, r.Stats())
	v.close()
	settledGoroutines(t, before+5)
}

// h264Lockers answer video.start with an H.264-only publisher that sends a
// made-up NAL unit 30 times a second.
type h264Lockers struct {
	*fakeLockers
	stop chan struct{}
}

func (f *h264Lockers) Call(ctx context.Context, id, method string, params, result any) error {
	if method != video.MethodStart {
		return nil
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		return err
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	f.t.Cleanup(func() { _ = pc.Close() })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: params.(video.StartParams).SDP}); err != nil {
		return err
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264}, "video", "h264")
	if err != nil {
		return err
	}
	if _, err := pc.AddTrack(track); err != nil {
		return err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	g := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return err
	}
	<-g
	go func() {
		t := time.NewTicker(time.Second / 30)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
				_ = track.WriteSample(media.Sample{Data: []byte{0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x33, 0xff}, Duration: time.Second / 30})
			}
		}
	}()
	*result.(*video.StartResult) = video.StartResult{SDP: pc.LocalDescription().SDP}
	return nil
}

// TestRelayH264: a locker that sends only H.264 is relayed as H.264 (the
// viewer negotiates it and gets its RTP).
func TestRelayH264(t *testing.T) {
	lockers := &h264Lockers{fakeLockers: newFakeLockers(t), stop: make(chan struct{})}
	defer close(lockers.stop)
	r := newRelay(t, lockers, testConfig())
	v, offer := newViewer(t)
	var packets atomic.Int64
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			packets.Add(1)
		}
	})
	res, err := r.AddViewer(t.Context(), "H1", offer, "test", "")
	require.NoError(t, err)
	v.answer(t, res.Answer)
	require.Equal(t, webrtc.MimeTypeH264, r.Status("H1").Codec)
	eventually(t, 10*time.Second, "H.264 RTP at the viewer", func() bool { return packets.Load() > 30 })
	v.close()
}
