// Package video relays the lockers' camera streams to viewers over WebRTC
// (pion/webrtc v4) and records clips on alarms. See docs/video.md.
//
// One upstream per locker: the hub offers (VP8 first, then H.264) in the
// video.start RPC and the locker's answer comes back in its result (DESIGN
// decision 21, docs/protocol.md). The upstream's RTP goes to one shared
// TrackLocalStaticRTP that every viewer's peer connection sends; viewers'
// keyframe requests (PLI, FIR) go upstream as one PLI at most every
// PLIInterval. The upstream stops IdleTimeout after its last viewer (or
// recording) has gone. Every peer connection uses one UDP port (ICE UDP
// mux).
package video

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Devices is how the relay talks to lockers (app wires the broker). Call
// returns an error wrapping ErrOffline or ErrNoAnswer when those apply.
type Devices interface {
	Call(ctx context.Context, lockerID, method string, params, result any) error
	Online(id string) bool
}

// RPC methods and their params.
const (
	MethodStart = "video.start"
	MethodStop  = "video.stop"
)

// StartParams are the params of video.start: the hub's SDP offer, ICE gathered.
type StartParams struct {
	SDP string `json:"sdp"`
}

// StartResult is the locker's answer to video.start.
type StartResult struct {
	SDP string `json:"sdp"`
}

// Errors. The web layer maps them to HTTP statuses.
var (
	ErrBadOffer         = errors.New("bad SDP offer")
	ErrTooManyViewers   = errors.New("too many viewers of this locker")
	ErrTooManyStreams   = errors.New("too many camera streams")
	ErrOffline          = errors.New("the locker is offline")
	ErrNoAnswer         = errors.New("the locker did not answer in time")
	ErrLocker           = errors.New("the locker could not start its camera")
	ErrNotFound         = errors.New("not found")
	ErrNotOwner         = errors.New("this viewer was started by somebody else")
	ErrStreamEnded      = errors.New("the locker's stream ended")
	ErrClosed           = errors.New("the video relay is shut down")
	ErrTooManyRecording = errors.New("too many recordings at once")
)

// Config tunes the relay; zero values take the defaults in brackets.
type Config struct {
	// UDPAddr is the one UDP address of ICE for every peer connection
	// [":8189"]. Its IP, when not unspecified, is the host candidate.
	UDPAddr string
	// HostIPs replace the host candidates' addresses (the public address of
	// a hub behind 1:1 NAT) [none].
	HostIPs []string
	// Interface limits host candidates to one network interface when UDPAddr
	// is unspecified ("" = every interface).
	Interface           string
	MaxViewersPerLocker int           // [8]
	MaxStreams          int           // upstreams at once [64]
	IdleTimeout         time.Duration // upstream kept after its last viewer [15s]
	StartTimeout        time.Duration // video.start answered and first RTP received [15s]
	ConnectTimeout      time.Duration // a viewer connected (ICE+DTLS) after its answer [15s]
	PLIInterval         time.Duration // at most one keyframe request upstream per [500ms]
	// ICE: a peer connection without connectivity for ICEDisconnected is
	// disconnected, for ICEFailed failed (then removed) [5s, 15s].
	ICEDisconnected time.Duration
	ICEFailed       time.Duration
	// Recordings (recorder.go).
	Recordings RecordingsConfig
}

func (c *Config) defaults() {
	if c.UDPAddr == "" {
		c.UDPAddr = ":8189"
	}
	if c.MaxViewersPerLocker <= 0 {
		c.MaxViewersPerLocker = 8
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 64
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 15 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 15 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 15 * time.Second
	}
	if c.PLIInterval <= 0 {
		c.PLIInterval = 500 * time.Millisecond
	}
	if c.ICEDisconnected <= 0 {
		c.ICEDisconnected = 5 * time.Second
	}
	if c.ICEFailed <= 0 {
		c.ICEFailed = 15 * time.Second
	}
	c.Recordings.defaults()
}

// UDPBufferBytes is the socket buffer asked for the ICE UDP port, each way.
const UDPBufferBytes = 4 << 20

// Relay is the hub's video relay.
type Relay struct {
	cfg     Config
	devices Devices
	log     *slog.Logger
	m       *metrics
	api     *webrtc.API
	udp     net.PacketConn
	mux     ice.UDPMux
	rec     *Recordings // nil: no recording

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the relay

	mu      sync.Mutex
	closed  bool
	streams map[string]*stream                  // by locker
	pcs     map[*webrtc.PeerConnection]struct{} // open peer connections (upstreams and viewers)
	stops   chan string                         // lockers to send video.stop (bounded; full: dropped, counted)
}

// New binds the ICE UDP port and returns a relay; Run it, then Close it
// (Run's end closes it too).
func New(devices Devices, logger *slog.Logger, reg prometheus.Registerer, cfg Config) (*Relay, error) {
	cfg.defaults()
	udp, err := net.ListenPacket("udp", cfg.UDPAddr)
	if err != nil {
		return nil, fmt.Errorf("video: ICE UDP port: %w", err)
	}
	// Every upstream and viewer shares this socket: give it room for bursts
	// (keyframes to many viewers, many lockers at once). The kernel caps it
	// at net.core.rmem_max / wmem_max (docs/operations.md).
	if u, ok := udp.(*net.UDPConn); ok {
		_ = u.SetReadBuffer(UDPBufferBytes)
		_ = u.SetWriteBuffer(UDPBufferBytes)
	}
	r := &Relay{cfg: cfg, devices: devices, log: logger, udp: udp, streams: map[string]*stream{},
		pcs: map[*webrtc.PeerConnection]struct{}{}, stops: make(chan string, 256)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mux = webrtc.NewICEUDPMux(nil, udp)
	if r.api, err = r.newAPI(); err != nil {
		_ = r.mux.Close()
		return nil, err
	}
	r.m = newMetrics(reg, r)
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.sendStops() }()
	return r, nil
}

func (r *Relay) newAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: fb}, PayloadType: 102},
	} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetICEUDPMux(r.mux)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(r.cfg.ICEDisconnected, r.cfg.ICEFailed, time.Second)
	ip := r.udp.LocalAddr().(*net.UDPAddr).IP
	if ip.To4() != nil {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	} else if !ip.IsUnspecified() {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP6})
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	}
	if ip.IsLoopback() {
		se.SetIncludeLoopbackCandidate(true)
	}
	if r.cfg.Interface != "" {
		iface := r.cfg.Interface
		se.SetInterfaceFilter(func(name string) bool { return name == iface })
	}
	if len(r.cfg.HostIPs) > 0 {
		se.SetNAT1To1IPs(r.cfg.HostIPs, webrtc.ICECandidateTypeHost)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// UDPAddr is the bound ICE UDP address.
func (r *Relay) UDPAddr() string { return r.udp.LocalAddr().String() }

// SetRecordings attaches the clip store (before Run).
func (r *Relay) SetRecordings(rec *Recordings) {
	r.rec = rec
	rec.deleted = func(n int) { r.m.retentionDeleted.Add(float64(n)) }
}

// Run stops idle upstreams until ctx ends, then closes the relay.
func (r *Relay) Run(ctx context.Context) {
	defer r.Close()
	period := min(r.cfg.IdleTimeout/4, time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.ctx.Done():
			return
		case now := <-t.C:
			r.reapIdle(now)
		}
	}
}

// Close ends every stream and viewer and releases the UDP port. It waits for
// the relay's goroutines.
func (r *Relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.wg.Wait()
		return
	}
	r.closed = true
	var all []*stream
	for _, s := range r.streams {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		r.endStream(s, "shutdown", false)
	}
	r.cancel()
	r.wg.Wait()
	_ = r.mux.Close()
}

// Stats is what the relay does now.
type Stats struct {
	Streams, Viewers, PeerConnections int
}

// Stats counts streams, viewers and open peer connections.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Stats{Streams: len(r.streams), PeerConnections: len(r.pcs)}
	for _, s := range r.streams {
		st.Viewers += len(s.viewers)
	}
	return st
}

// LockerStatus is one locker's video state.
type LockerStatus struct {
	Streaming bool   `json:"streaming"` // an upstream runs (or is starting)
	Ready     bool   `json:"ready"`     // its first RTP arrived
	Codec     string `json:"codec,omitempty"`
	Viewers   int    `json:"viewers"`
	Recording bool   `json:"recording"`
}

// Status returns a locker's video state.
func (r *Relay) Status(lockerID string) LockerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.streams[lockerID]
	if !ok {
		return LockerStatus{}
	}
	st := LockerStatus{Streaming: true, Viewers: len(s.viewers), Recording: s.recorders > 0}
	select {
	case <-s.ready:
		if s.err == nil {
			st.Ready, st.Codec = true, s.track.Codec().MimeType
		}
	default:
	}
	return st
}

// stream is one locker's upstream.
type stream struct {
	locker   string
	started  time.Time
	ready    chan struct{} // closed when track is set or err
	err      error         // why it could not start (set before ready closes)
	pc       *webrtc.PeerConnection
	track    *webrtc.TrackLocalStaticRTP // set before ready closes
	ssrc     atomic.Uint32               // the upstream track's SSRC (for PLIs)
	nViewers atomic.Int32                // len(viewers), for the forward loop
	lastPLI  atomic.Int64                // unix nanos of the last PLI sent upstream

	// Guarded by Relay.mu.
	viewers   map[string]*viewer
	pending   int // viewers being set up (count against the limit)
	recorders int
	idleSince time.Time // zero while it has viewers, pending ones or recorders
	ended     bool

	tapMu sync.Mutex
	taps  map[*recorder]struct{} // recorders fed from the forward loop
}

func (s *stream) inUse() bool { return len(s.viewers) > 0 || s.pending > 0 || s.recorders > 0 }

// acquire returns the locker's stream, starting it when there is none. kind
// is "viewer" (counted in pending, limited) or "recorder". Call release on failure.
func (r *Relay) acquire(lockerID, kind string) (*stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	s, ok := r.streams[lockerID]
	if !ok {
		if len(r.streams) >= r.cfg.MaxStreams {
			r.m.refused.WithLabelValues("too_many_streams").Inc()
			return nil, fmt.Errorf("%w: %d streams run (the limit)", ErrTooManyStreams, r.cfg.MaxStreams)
		}
		s = &stream{locker: lockerID, started: time.Now(), ready: make(chan struct{}), viewers: map[string]*viewer{}, taps: map[*recorder]struct{}{}}
		r.streams[lockerID] = s
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.startStream(s) }()
	}
	switch kind {
	case "viewer":
		if len(s.viewers)+s.pending >= r.cfg.MaxViewersPerLocker {
			r.m.refused.WithLabelValues("too_many_viewers").Inc()
			if !s.inUse() {
				s.idleSince = time.Now()
			}
			return nil, fmt.Errorf("%w: %d watch it already (the limit)", ErrTooManyViewers, r.cfg.MaxViewersPerLocker)
		}
		s.pending++
	case "recorder":
		s.recorders++
	}
	s.idleSince = time.Time{}
	return s, nil
}

// release undoes acquire (kind as given) when the viewer or recorder did not
// come about or has gone.
func (r *Relay) release(s *stream, kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch kind {
	case "viewer":
		s.pending--
	case "recorder":
		s.recorders--
	}
	if !s.inUse() && s.idleSince.IsZero() {
		s.idleSince = time.Now()
	}
}

// wait waits until s is ready, or failed, or ctx ends.
func (s *stream) wait(ctx context.Context) error {
	select {
	case <-s.ready:
		return s.err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the locker's stream: %v", ErrNoAnswer, ctx.Err())
	}
}

func (r *Relay) newPC() (*webrtc.PeerConnection, error) {
	pc, err := r.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.pcs[pc] = struct{}{}
	r.mu.Unlock()
	return pc, nil
}

// closePC closes pc once; it reports whether this call closed it.
func (r *Relay) closePC(pc *webrtc.PeerConnection) bool {
	if pc == nil {
		return false
	}
	r.mu.Lock()
	_, open := r.pcs[pc]
	delete(r.pcs, pc)
	r.mu.Unlock()
	if !open {
		return false
	}
	_ = pc.Close()
	return true
}

// startStream makes the offer, sends video.start, applies the answer and
// waits for the first RTP packet; then it forwards until the upstream ends.
func (r *Relay) startStream(s *stream) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.StartTimeout)
	defer cancel()
	gotTrack := make(chan *webrtc.TrackRemote, 1)
	err := func() error {
		pc, err := r.newPC()
		if err != nil {
			return err
		}
		r.mu.Lock()
		s.pc = pc
		r.mu.Unlock()
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
		pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			select {
			case gotTrack <- t:
			default:
			}
		})
		pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
			if st == webrtc.PeerConnectionStateFailed {
				r.endStream(s, "upstream_failed", false)
			}
		})
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			return err
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(offer); err != nil {
			return err
		}
		select {
		case <-gathered:
		case <-ctx.Done():
			return fmt.Errorf("ICE gathering: %w", ctx.Err())
		}
		var res StartResult
		if err := r.devices.Call(ctx, s.locker, MethodStart, StartParams{SDP: pc.LocalDescription().SDP}, &res); err != nil {
			switch {
			case errors.Is(err, ErrOffline), errors.Is(err, ErrNoAnswer):
				return err
			case ctx.Err() != nil:
				return fmt.Errorf("%w: %v", ErrNoAnswer, err)
			default:
				return fmt.Errorf("%w: %v", ErrLocker, err)
			}
		}
		answer, err := ParseAnswer(res.SDP)
		if err != nil {
			r.m.badAnswers.Inc()
			return fmt.Errorf("%w: its answer: %v", ErrLocker, err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			r.m.badAnswers.Inc()
			return fmt.Errorf("%w: its answer: %v", ErrLocker, err)
		}
		select {
		case t := <-gotTrack:
			track, err := webrtc.NewTrackLocalStaticRTP(t.Codec().RTPCodecCapability, "video", "locker-"+s.locker)
			if err != nil {
				return err
			}
			s.track = track
			s.ssrc.Store(uint32(t.SSRC()))
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.forward(s, t) }()
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w: no video arrived within %s of video.start", ErrNoAnswer, r.cfg.StartTimeout)
		}
	}()
	r.mu.Lock()
	pc, ended := s.pc, s.ended
	r.mu.Unlock()
	if err == nil && ended {
		err = ErrStreamEnded // ended while starting (shutdown): its peer connection was not closed yet
	}
	if err != nil {
		r.m.starts.WithLabelValues(startOutcome(err)).Inc()
		r.log.Warn("video stream did not start", "locker", s.locker, "error", err)
		s.err = err
		close(s.ready)
		r.endStream(s, "start_failed", errors.Is(err, ErrNoAnswer))
		r.closePC(pc) // endStream may have run before the peer connection existed
		return
	}
	r.m.starts.WithLabelValues("ok").Inc()
	r.log.Info("video stream started", "locker", s.locker, "codec", s.track.Codec().MimeType, "took", time.Since(s.started).Round(time.Millisecond))
	close(s.ready)
}

func startOutcome(err error) string {
	switch {
	case errors.Is(err, ErrOffline):
		return "offline"
	case errors.Is(err, ErrNoAnswer):
		return "no_answer"
	case errors.Is(err, ErrLocker):
		return "refused"
	default:
		return "error"
	}
}

// forward copies the upstream's RTP to the shared track and the recorders
// until the upstream ends, then ends the stream.
func (r *Relay) forward(s *stream, t *webrtc.TrackRemote) {
	for {
		p, _, err := t.ReadRTP()
		if err != nil {
			r.endStream(s, "upstream_ended", false)
			return
		}
		size := float64(p.MarshalSize())
		r.m.upPackets.Inc()
		r.m.upBytes.Add(size)
		if n := s.nViewers.Load(); n > 0 {
			// Errors are per viewer (one that is closing): the others still get it.
			_ = s.track.WriteRTP(p)
			r.m.fwdPackets.Add(float64(n))
			r.m.fwdBytes.Add(size * float64(n))
		}
		s.tapMu.Lock()
		for rec := range s.taps {
			rec.push(p)
		}
		s.tapMu.Unlock()
	}
}

// keyframe asks the upstream for a keyframe, at most once per PLIInterval.
func (r *Relay) keyframe(s *stream) {
	now := time.Now().UnixNano()
	last := s.lastPLI.Load()
	if now-last < r.cfg.PLIInterval.Nanoseconds() || !s.lastPLI.CompareAndSwap(last, now) {
		r.m.pliDropped.Inc()
		return
	}
	r.mu.Lock()
	pc := s.pc
	r.mu.Unlock()
	if pc == nil {
		return
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: s.ssrc.Load()}}); err == nil {
		r.m.pliSent.Inc()
	}
}

// endStream removes s, closes its viewers and upstream and, unless the
// locker never answered, queues a video.stop for the locker. It runs on
// pion's callback goroutines too: it never waits for a peer connection's own
// goroutines.
func (r *Relay) endStream(s *stream, reason string, noStop bool) {
	r.mu.Lock()
	if s.ended {
		r.mu.Unlock()
		return
	}
	s.ended = true
	if r.streams[s.locker] == s {
		delete(r.streams, s.locker)
	}
	viewers := make([]*viewer, 0, len(s.viewers))
	for _, v := range s.viewers {
		viewers = append(viewers, v)
	}
	s.viewers = map[string]*viewer{}
	s.nViewers.Store(0)
	pc := s.pc
	r.mu.Unlock()
	for _, v := range viewers {
		r.closeViewer(v, "stream_ended")
	}
	r.closePC(pc)
	s.tapMu.Lock()
	for rec := range s.taps {
		rec.upstreamEnded()
	}
	s.tapMu.Unlock()
	r.m.ended.WithLabelValues(reason).Inc()
	r.log.Info("video stream ended", "locker", s.locker, "reason", reason)
	if noStop || pc == nil {
		return
	}
	select {
	case r.stops <- s.locker:
	default:
		r.m.stopsDropped.Inc()
	}
}

// sendStops sends the queued video.stop requests until the relay closes
// (then those still queued).
func (r *Relay) sendStops() {
	send := func(id string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.devices.Call(ctx, id, MethodStop, struct{}{}, nil); err != nil {
			r.log.Debug("video.stop", "locker", id, "error", err)
		}
	}
	for {
		select {
		case id := <-r.stops:
			send(id)
		case <-r.ctx.Done():
			for {
				select {
				case id := <-r.stops:
					if r.devices.Online(id) {
						send(id)
					}
				default:
					return
				}
			}
		}
	}
}

// reapIdle ends the streams idle for IdleTimeout.
func (r *Relay) reapIdle(now time.Time) {
	var idle []*stream
	r.mu.Lock()
	for _, s := range r.streams {
		if !s.inUse() && !s.idleSince.IsZero() && now.Sub(s.idleSince) >= r.cfg.IdleTimeout {
			idle = append(idle, s)
		}
	}
	r.mu.Unlock()
	for _, s := range idle {
		r.endStream(s, "idle", false)
	}
}

// newID makes a viewer id.
func newID() string { return strings.ToLower(rand.Text()[:16]) }
