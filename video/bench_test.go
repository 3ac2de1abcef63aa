//go:build bench

package video_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
)

// BenchmarkVideoRelay measures the hub's relay on loopback, as issue 9 asks:
// one locker to 50 viewers, and 20 lockers each to 2 viewers. The hub runs
// in this process (its CPU is this process's, from getrusage, over the
// measured window; RSS from /proc). The lockers are `lockersim run`, a
// process of its own, looping a 1 Mbit/s 30 fps VP8 clip (640×480, made
// with Debian's ffmpeg when it is there, else the 250 kbit/s test clip);
// the viewers are pion peer connections in a third process (this test
// binary again), which counts frames and RTP loss from sequence numbers.
//
//	make bench BENCH=VideoRelay      (BENCH_VIDEO_SECONDS, default 20)
func BenchmarkVideoRelay(b *testing.B) {
	secs := 20
	if v, err := strconv.Atoi(os.Getenv("BENCH_VIDEO_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for _, sc := range []struct {
		name             string
		lockers, viewers int // viewers per locker
	}{{"1x50", 1, 50}, {"20x2", 20, 2}} {
		b.Run("hub-"+sc.name, func(b *testing.B) {
			for range b.N {
				runVideoBench(b, sc.name, sc.lockers, sc.viewers, time.Duration(secs)*time.Second)
			}
		})
		b.Run("bare_pion-"+sc.name, func(b *testing.B) {
			for range b.N {
				runBareBench(b, sc.name, sc.lockers, sc.viewers, time.Duration(secs)*time.Second)
			}
		})
	}
}

type viewerResult struct {
	Viewers           int     `json:"viewers"`
	Connected         int     `json:"connected"`
	Frames            int64   `json:"frames"`
	Packets           int64   `json:"packets"`
	LostPackets       int64   `json:"lost"`
	Seconds           float64 `json:"seconds"`
	FPSPerViewer      float64 `json:"fps_per_viewer"`
	KbitPerViewer     float64 `json:"kbit_per_viewer"`
	ViewerProcessCPUs float64 `json:"viewer_process_cpu"`
}

func runVideoBench(b *testing.B, name string, lockers, perLocker int, window time.Duration) {
	h := hubtest.Start(b, func(c *app.Config) {
		c.Logger = slog.New(slog.DiscardHandler)
		c.Video.MaxViewersPerLocker = perLocker
		c.Video.MaxStreams = lockers
	})
	dir := b.TempDir()
	sim := filepath.Join(dir, "lockersim")
	if out, err := exec.Command("go", "build", "-o", sim, "github.com/lockerhub/lockerhub/cmd/lockersim").CombinedOutput(); err != nil {
		b.Fatalf("build lockersim: %v\n%s", err, out)
	}
	clip, clipDesc := benchClip(b, dir)
	prefix := "VB" + strings.ReplaceAll(name, "x", "-") + "-"
	run := exec.Command(sim, "run", "--hub", h.MQTTAddr, "--api", h.DeviceURL, "--admin", h.HTTPURL, "--admin-token", h.AdminToken,
		"--ca", h.CAFile(), "--data", filepath.Join(dir, "certs"), "--prefix", prefix, "--lockers", strconv.Itoa(lockers), "--cells", "4",
		"--telemetry", "1h", "--ramp", "0s", "--status-every", "0", "--control", "", "--video-iface", "lo", "--video-clip", clip, "--log-level", "warn")
	run.Stdout, run.Stderr = os.Stderr, os.Stderr
	if err := run.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = run.Process.Signal(syscall.SIGTERM); _ = run.Wait() }()
	var ids []string
	for i := 1; i <= lockers; i++ {
		ids = append(ids, lockersim.LockerID(prefix, i, lockers))
	}
	hubtest.Eventually(b, 60*time.Second, "lockers online", func() bool {
		for _, id := range ids {
			if !h.App.Broker.Online(id) {
				return false
			}
		}
		return true
	})
	m := measureViewers(b, h.HTTPURL, h.AdminToken, ids, perLocker, window)
	st := h.App.Video.Stats()
	m.report(b, "hub", name, lockers, perLocker, clipDesc, st.PeerConnections)
}

// measured is one run's figures.
type measured struct {
	res              viewerResult
	cores, idle      float64 // while viewers watch; upstreams only, before
	rssBefore, rssPk int64
}

func (m measured) report(b *testing.B, relay, name string, lockers, perLocker int, clip string, pcs int) {
	lossPct := 100 * float64(m.res.LostPackets) / float64(max(1, m.res.Packets+m.res.LostPackets))
	b.ReportMetric(m.cores, "relay_cores")
	b.ReportMetric(float64(m.rssPk)/(1<<20), "rss_peak_MB")
	b.ReportMetric(m.res.FPSPerViewer, "fps/viewer")
	b.ReportMetric(lossPct, "loss_%")
	fmt.Printf("FIGURE video_relay relay=%s %s lockers=%d viewers=%d connected=%d clip=%q cores=%.3f idle_cores=%.3f rss_before_MB=%.0f rss_peak_MB=%.0f fps_per_viewer=%.1f kbit_per_viewer=%.0f rtp_received=%d rtp_lost=%d loss_pct=%.3f viewer_process_cores=%.2f peer_connections=%d window_s=%.0f\n",
		relay, name, lockers, lockers*perLocker, m.res.Connected, clip, m.cores, m.idle, float64(m.rssBefore)/(1<<20), float64(m.rssPk)/(1<<20),
		m.res.FPSPerViewer, m.res.KbitPerViewer, m.res.Packets, m.res.LostPackets, lossPct, m.res.ViewerProcessCPUs, pcs, m.res.Seconds)
	if m.res.Connected != lockers*perLocker {
		b.Errorf("%s: %d of %d viewers connected", relay, m.res.Connected, lockers*perLocker)
	}
}

// measureViewers runs the viewer process against base's WHEP endpoints and
// measures this process (the relay) over its counting window.
func measureViewers(b *testing.B, base, token string, ids []string, perLocker int, window time.Duration) measured {
	runtime.GC()
	debug.FreeOSMemory()
	m := measured{rssBefore: selfRSS()}
	// What the process costs with its upstreams running and nobody watching.
	c0, i0 := selfCPU(), time.Now()
	time.Sleep(5 * time.Second)
	m.idle = (selfCPU() - c0).Seconds() / time.Since(i0).Seconds()
	child := exec.Command(os.Args[0], "-test.run", "^TestVideoBenchViewers$", "-test.v", "-test.timeout", "10m")
	spec, _ := json.Marshal(map[string]any{"base": base, "token": token, "lockers": ids, "per_locker": perLocker, "seconds": window.Seconds()})
	child.Env = append(os.Environ(), "BENCH_VIDEO_VIEWERS="+string(spec))
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(prefix string) string {
		deadline := time.After(window + 3*time.Minute)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					b.Fatalf("viewer process ended before %q", prefix)
				}
				if rest, ok := strings.CutPrefix(l, prefix); ok {
					return rest
				}
			case <-deadline:
				b.Fatalf("no %q from the viewer process", prefix)
			}
		}
	}
	next("READY")
	cpu0, t0 := selfCPU(), time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m.rssPk = max(m.rssPk, selfRSS())
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	if err := json.Unmarshal([]byte(next("RESULT ")), &m.res); err != nil {
		b.Fatal(err)
	}
	m.cores = (selfCPU() - cpu0).Seconds() / time.Since(t0).Seconds()
	close(done)
	wg.Wait()
	return m
}

// benchClip makes the 1 Mbit/s clip with ffmpeg, or falls back to the test clip.
func benchClip(b *testing.B, dir string) (string, string) {
	path := filepath.Join(dir, "bench.ivf")
	if ff, err := exec.LookPath("ffmpeg"); err == nil {
		cmd := exec.Command(ff, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=640x480:rate=30",
			"-vf", "noise=alls=40:allf=t", "-t", "10", // noise: the encoder cannot squeeze it below the target rate
			"-c:v", "libvpx", "-b:v", "1M", "-minrate", "1M", "-maxrate", "1M", "-g", "30", "-y", path)
		if out, err := cmd.CombinedOutput(); err == nil {
			return path, "640x480 30fps VP8 1 Mbit/s target (ffmpeg testsrc+noise)"
		} else {
			b.Logf("ffmpeg: %v %s; using the test clip", err, out)
		}
	}
	if err := os.WriteFile(path, lockersim.TestClip, 0o600); err != nil {
		b.Fatal(err)
	}
	return path, "lockersim test clip 320x240 15fps 250 kbit/s"
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func selfRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestVideoBenchViewers is the viewer process of BenchmarkVideoRelay (it
// does nothing without BENCH_VIDEO_VIEWERS): it opens the viewers over WHEP,
// prints READY once each has a keyframe, counts for the window and prints
// RESULT {json}.
func TestVideoBenchViewers(t *testing.T) {
	raw := os.Getenv("BENCH_VIDEO_VIEWERS")
	if raw == "" {
		t.Skip("the viewer process of BenchmarkVideoRelay")
	}
	var spec struct {
		Base      string   `json:"base"`
		Token     string   `json:"token"`
		Lockers   []string `json:"lockers"`
		PerLocker int      `json:"per_locker"`
		Seconds   float64  `json:"seconds"`
	}
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	var vs []*benchViewer
	for _, id := range spec.Lockers {
		for range spec.PerLocker {
			v := &benchViewer{Viewer: hubtest.NewViewer(t)}
			status, body := v.WHEP(t, spec.Base+"/api/v1/lockers/"+id+"/video/whep", spec.Token)
			if status != http.StatusCreated {
				t.Fatalf("WHEP %s: %d %s", id, status, body)
			}
			vs = append(vs, v)
		}
	}
	hubtest.Eventually(t, 60*time.Second, "every viewer has a keyframe", func() bool {
		for _, v := range vs {
			if v.Keyframes.Load() == 0 {
				return false
			}
		}
		return true
	})
	for _, v := range vs {
		v.mark()
	}
	fmt.Println("READY")
	cpu0, t0 := selfCPU(), time.Now()
	time.Sleep(time.Duration(spec.Seconds * float64(time.Second)))
	secs := time.Since(t0).Seconds()
	res := viewerResult{Viewers: len(vs), Seconds: secs, ViewerProcessCPUs: (selfCPU() - cpu0).Seconds() / secs}
	var bytes int64
	for _, v := range vs {
		f, p, l, by := v.since()
		res.Frames += f
		res.Packets += p
		res.LostPackets += l
		bytes += by
		if v.PC.ConnectionState() == webrtc.PeerConnectionStateConnected {
			res.Connected++
		}
	}
	res.FPSPerViewer = float64(res.Frames) / secs / float64(len(vs))
	res.KbitPerViewer = float64(bytes) * 8 / 1000 / secs / float64(len(vs))
	out, _ := json.Marshal(res)
	fmt.Println("RESULT " + string(out))
	for _, v := range vs {
		v.Close()
	}
}

// benchViewer adds RTP counts from the receiver's statistics (packets
// received and lost, from the sequence numbers) to hubtest's viewer.
type benchViewer struct {
	*hubtest.Viewer
	f0, p0, l0, b0 int64
}

func (v *benchViewer) stats() (packets, lost int64) {
	for _, r := range v.PC.GetReceivers() {
		if tr := r.Track(); tr != nil {
			st := v.PC.GetStats()
			for _, s := range st {
				if in, ok := s.(webrtc.InboundRTPStreamStats); ok && in.SSRC == tr.SSRC() {
					return int64(in.PacketsReceived), int64(in.PacketsLost)
				}
			}
		}
	}
	return 0, 0
}

func (v *benchViewer) mark() {
	v.f0, v.b0 = v.Frames.Load(), v.Bytes.Load()
	v.p0, v.l0 = v.stats()
}

func (v *benchViewer) since() (frames, packets, lost, bytes int64) {
	p, l := v.stats()
	return v.Frames.Load() - v.f0, p - v.p0, l - v.l0, v.Bytes.Load() - v.b0
}

// runBareBench is the peer of the same run: bare pion (default codecs and
// interceptors, one TrackLocalStaticRTP per upstream shared by its viewers,
// viewers' RTCP read and dropped, one UDP mux port) in this process, the
// publishers (lockersim's, the same clip) in a process of their own behind a
// plain HTTP offer/answer, the same viewer process.
func runBareBench(b *testing.B, name string, lockers, perLocker int, window time.Duration) {
	dir := b.TempDir()
	clip, clipDesc := benchClip(b, dir)
	pub := exec.Command(os.Args[0], "-test.run", "^TestVideoBenchPublisher$", "-test.v", "-test.timeout", "10m")
	pub.Env = append(os.Environ(), "BENCH_VIDEO_PUBLISHER="+clip)
	pub.Stderr = os.Stderr
	out, err := pub.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := pub.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = pub.Process.Kill(); _ = pub.Wait() }()
	sc := bufio.NewScanner(out)
	var pubURL string
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
			pubURL = rest
			break
		}
	}
	if pubURL == "" {
		b.Fatal("the publisher process did not start")
	}
	go func() {
		for sc.Scan() {
		}
	}()

	br := newBareRelay(b)
	var ids []string
	for i := 1; i <= lockers; i++ {
		id := fmt.Sprintf("BARE-%02d", i)
		ids = append(ids, id)
		br.startUpstream(b, id, pubURL+"/offer/"+id)
	}
	m := measureViewers(b, br.srv.URL, "", ids, perLocker, window)
	br.mu.Lock()
	pcs := len(br.pcs)
	br.mu.Unlock()
	m.report(b, "bare_pion", name, lockers, perLocker, clipDesc, pcs)
}

type bareRelay struct {
	api *webrtc.API
	srv *httptest.Server

	mu     sync.Mutex
	tracks map[string]*webrtc.TrackLocalStaticRTP
	pcs    []*webrtc.PeerConnection
}

func newBareRelay(b *testing.B) *bareRelay {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		b.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		b.Fatal(err)
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	_ = udp.(*net.UDPConn).SetReadBuffer(4 << 20)
	_ = udp.(*net.UDPConn).SetWriteBuffer(4 << 20)
	var se webrtc.SettingEngine
	mux := webrtc.NewICEUDPMux(nil, udp)
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	br := &bareRelay{api: webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)),
		tracks: map[string]*webrtc.TrackLocalStaticRTP{}}
	hm := http.NewServeMux()
	hm.HandleFunc("POST /api/v1/lockers/{id}/video/whep", br.whep)
	br.srv = httptest.NewServer(hm)
	b.Cleanup(func() {
		br.srv.Close()
		br.mu.Lock()
		for _, pc := range br.pcs {
			_ = pc.Close()
		}
		br.mu.Unlock()
		_ = mux.Close()
	})
	return br
}

func (br *bareRelay) newPC(b testing.TB) *webrtc.PeerConnection {
	pc, err := br.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	br.mu.Lock()
	br.pcs = append(br.pcs, pc)
	br.mu.Unlock()
	return pc
}

func (br *bareRelay) startUpstream(b *testing.B, id, url string) {
	pc := br.newPC(b)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		b.Fatal(err)
	}
	got := make(chan struct{})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		local, err := webrtc.NewTrackLocalStaticRTP(t.Codec().RTPCodecCapability, "video", id)
		if err != nil {
			return
		}
		br.mu.Lock()
		br.tracks[id] = local
		br.mu.Unlock()
		close(got)
		for {
			p, _, err := t.ReadRTP()
			if err != nil {
				return
			}
			_ = local.WriteRTP(p)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		b.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		b.Fatal(err)
	}
	<-g
	resp, err := http.Post(url, "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		b.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		b.Fatalf("publisher's answer: %v", err)
	}
	select {
	case <-got:
	case <-time.After(15 * time.Second):
		b.Fatal("no track from the publisher")
	}
}

func (br *bareRelay) whep(w http.ResponseWriter, r *http.Request) {
	br.mu.Lock()
	track := br.tracks[r.PathValue("id")]
	br.mu.Unlock()
	offer, _ := io.ReadAll(r.Body)
	if track == nil {
		http.Error(w, "no such stream", 404)
		return
	}
	pc, err := br.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	br.mu.Lock()
	br.pcs = append(br.pcs, pc)
	br.mu.Unlock()
	sender, err := pc.AddTrack(track)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	go func() {
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	g := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	<-g
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", r.URL.Path+"/x")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

// TestVideoBenchPublisher is the publisher process of the bare-pion peer
// (nothing without BENCH_VIDEO_PUBLISHER): POST /offer/{id} with an SDP
// offer answers it with lockersim's publisher of the clip.
func TestVideoBenchPublisher(t *testing.T) {
	path := os.Getenv("BENCH_VIDEO_PUBLISHER")
	if path == "" {
		t.Skip("the publisher process of BenchmarkVideoRelay's bare-pion peer")
	}
	clip, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	api, err := lockersim.NewVideoAPI(lockersim.VideoOptions{Interface: "lo"})
	if err != nil {
		t.Fatal(err)
	}
	hm := http.NewServeMux()
	hm.HandleFunc("POST /offer/{id}", func(w http.ResponseWriter, r *http.Request) {
		offer, _ := io.ReadAll(r.Body)
		_, answer, err := lockersim.Publish(r.Context(), api, string(offer), clip)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		_, _ = io.WriteString(w, answer)
	})
	srv := httptest.NewServer(hm)
	defer srv.Close()
	fmt.Println("LISTEN " + srv.URL)
	time.Sleep(9 * time.Minute) // until the benchmark kills it
}
