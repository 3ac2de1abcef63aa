package lockersim

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/lockerhub/lockerhub/protocol"
)

// The locker's camera (docs/video.md): on video.start the locker answers the
// hub's SDP offer and sends a short pre-encoded VP8 clip (testdata/clip.ivf,
// 320×240, 15 fps, a keyframe every second, made with Debian's ffmpeg:
// `ffmpeg -f lavfi -i testsrc=size=320x240:rate=15 -t 4 -c:v libvpx -b:v 250k -g 15 clip.ivf`)
// in a loop as RTP; video.stop (or a new video.start) ends it.

//go:embed testdata/clip.ivf
var TestClip []byte

// VideoStartParams are the params of video.start: the hub's SDP offer, ICE
// gathered (no trickle).
type VideoStartParams struct {
	SDP string `json:"sdp"`
}

// VideoStartResult is the result of video.start: the locker's SDP answer.
type VideoStartResult struct {
	SDP string `json:"sdp"`
}

// VideoOptions configure a publisher's network.
type VideoOptions struct {
	// Interface limits ICE host candidates to one network interface ("lo"
	// in tests; "" = every interface).
	Interface string
	// ICEFailed is how long without connectivity before the publisher gives
	// up (0: pion's default).
	ICEFailed time.Duration
}

// NewVideoAPI returns a pion API for publishers: VP8 only, no mDNS,
// loopback candidates included (a simulator often runs beside the hub).
func NewVideoAPI(o VideoOptions) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}},
		PayloadType: 96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if o.Interface != "" {
		iface := o.Interface
		se.SetInterfaceFilter(func(name string) bool { return name == iface })
	}
	if o.ICEFailed > 0 {
		se.SetICETimeouts(o.ICEFailed/2, o.ICEFailed, 500*time.Millisecond)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Publisher sends a looped IVF (VP8) clip to one peer.
type Publisher struct {
	pc     *webrtc.PeerConnection
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Frames sent, keyframe requests (PLI/FIR) received.
	Frames, KeyframeRequests atomic.Int64
}

// Publish answers offer and starts sending clip in a loop until Close (or
// until the connection fails). It returns the SDP answer, ICE gathered.
func Publish(ctx context.Context, api *webrtc.API, offer string, clip []byte) (*Publisher, string, error) {
	hdr, err := clipHeader(clip)
	if err != nil {
		return nil, "", err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*Publisher, string, error) {
		_ = pc.Close()
		return nil, "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("the hub's offer: %w", err))
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "lockersim")
	if err != nil {
		return fail(err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		return fail(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &Publisher{pc: pc, cancel: cancel}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			cancel()
		}
	})
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pk := range pkts {
				switch pk.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					p.KeyframeRequests.Add(1)
				}
			}
		}
	}()
	go func() { defer p.wg.Done(); p.loop(runCtx, track, clip, hdr) }()
	return p, pc.LocalDescription().SDP, nil
}

func clipHeader(clip []byte) (*ivfreader.IVFFileHeader, error) {
	_, hdr, err := ivfreader.NewWith(bytes.NewReader(clip))
	if err != nil {
		return nil, fmt.Errorf("video clip: %w", err)
	}
	if string(hdr.FourCC[:]) != "VP80" || hdr.TimebaseNumerator == 0 || hdr.TimebaseDenominator == 0 {
		return nil, fmt.Errorf("video clip: want a VP8 IVF file, got %q", hdr.FourCC[:])
	}
	return hdr, nil
}

// loop sends the clip's frames at its frame rate, from the start again at its end.
func (p *Publisher) loop(ctx context.Context, track *webrtc.TrackLocalStaticSample, clip []byte, hdr *ivfreader.IVFFileHeader) {
	// IVF frame timestamps count in the header's timebase; ffmpeg writes 1/fps.
	frame := time.Duration(float64(time.Second) * float64(hdr.TimebaseNumerator) / float64(hdr.TimebaseDenominator))
	if frame <= 0 || frame > time.Second {
		frame = time.Second / 15
	}
	t := time.NewTicker(frame)
	defer t.Stop()
	for ctx.Err() == nil {
		r, _, err := ivfreader.NewWith(bytes.NewReader(clip))
		if err != nil {
			return
		}
		for {
			data, _, err := r.ParseNextFrame()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := track.WriteSample(media.Sample{Data: data, Duration: frame}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				return
			}
			p.Frames.Add(1)
		}
	}
}

// Done is closed when the publisher has stopped sending.
func (p *Publisher) Close() {
	p.cancel()
	_ = p.pc.Close()
	p.wg.Wait()
}

// camera is a locker's video state: at most one publisher.
type camera struct {
	mu   sync.Mutex
	api  *webrtc.API
	pub  *Publisher
	errs atomic.Int64
}

// videoRPC handles video.start and video.stop off the MQTT read loop: ICE
// gathering takes a while. answer publishes the response.
func (l *Locker) videoRPC(req protocol.Request) {
	cam := &l.cam
	respond := func(result any, perr *protocol.Error) {
		var raw json.RawMessage
		if perr == nil {
			raw, _ = json.Marshal(result)
		}
		l.mu.Lock()
		l.respondLocked(req.ID, raw, perr)
		l.mu.Unlock()
	}
	cam.mu.Lock()
	defer cam.mu.Unlock()
	if cam.pub != nil {
		cam.pub.Close()
		cam.pub = nil
	}
	if req.Method == protocol.MethodVideoStop {
		respond(map[string]any{}, nil)
		return
	}
	var p VideoStartParams
	if err := json.Unmarshal(orEmpty(req.Params), &p); err != nil || p.SDP == "" {
		respond(nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: `params must be {"sdp":"<the hub's offer>"}`})
		return
	}
	if cam.api == nil {
		api, err := NewVideoAPI(VideoOptions{Interface: l.env.cfg.VideoInterface, ICEFailed: l.env.cfg.VideoICEFailed})
		if err != nil {
			respond(nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: err.Error()})
			return
		}
		cam.api = api
	}
	clip := l.env.cfg.VideoClip
	if clip == nil {
		clip = TestClip
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub, answer, err := Publish(ctx, cam.api, p.SDP, clip)
	if err != nil {
		cam.errs.Add(1)
		respond(nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: err.Error()})
		return
	}
	cam.pub = pub
	l.env.stats.VideoStarts.Add(1)
	respond(VideoStartResult{SDP: answer}, nil)
}

// stopCamera ends the locker's video (at shutdown).
func (l *Locker) stopCamera() {
	l.cam.mu.Lock()
	defer l.cam.mu.Unlock()
	if l.cam.pub != nil {
		l.cam.pub.Close()
		l.cam.pub = nil
	}
}

// VideoPublisher returns the locker's current publisher (nil: no video).
func (l *Locker) VideoPublisher() *Publisher {
	l.cam.mu.Lock()
	defer l.cam.mu.Unlock()
	return l.cam.pub
}
