package dashboardtest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
)

// chromium finds the browser, or skips the test (fails it under CI=true).
func chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "no Chromium (/usr/bin/chromium); install it with scripts/ensure-tools.sh chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is one headless Chromium tab on a hub.
type browser struct {
	t   testing.TB
	h   *hubtest.Hub
	ctx context.Context

	mu   sync.Mutex
	errs []string // uncaught exceptions and console errors of the page
}

// newBrowser starts Chromium with a fresh profile and a window of w×h pixels.
func newBrowser(t testing.TB, h *hubtest.Hub, w, ht int) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// The machines have no network: without these Chromium is slow and noisy (NOTES.md).
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		// WebRTC on loopback (the camera viewer): host candidates as IPs, not
		// mDNS names, and loopback candidates gathered (NOTES.md).
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(w, ht),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, h: h, ctx: ctx}
	// Start the browser now (without a deadline: it lives as long as ctx), so
	// that a broken installation fails here.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium: %v", err)
	}
	// Uncaught exceptions and console errors of the page fail the test;
	// network errors in the browser log (a WebSocket reconnecting) do not.
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source == "") {
				b.note(m.String())
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		<-done
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.errs) > 0 {
			t.Errorf("the page reported errors:\n%s", strings.Join(b.errs, "\n"))
		}
	})
	return b
}

func (b *browser) note(s string) {
	b.mu.Lock()
	b.errs = append(b.errs, s)
	b.mu.Unlock()
}

// run runs actions with a deadline.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.screenshot("failed-" + sanitize(b.t.Name()))
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, js string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js))
}

// waitJS polls a JavaScript expression every 20 ms until it is true and
// returns how long that took.
func (b *browser) waitJS(what string, within time.Duration, js string) time.Duration {
	b.t.Helper()
	start := time.Now()
	var last error
	for {
		ok, err := eval[bool](b, js)
		if last = err; err == nil && ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			b.screenshot("failed-" + sanitize(b.t.Name()))
			b.t.Fatalf("not within %s: %s (last error: %v)\npage text:\n%s", within, what, last, b.text("body"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// text is the visible text of the first element matching a CSS selector ("" when none).
func (b *browser) text(sel string) string {
	s, _ := eval[string](b, fmt.Sprintf(`(document.querySelector(%q)||{}).innerText||""`, sel))
	return s
}

// open navigates to a dashboard URL fragment ("#/", "#/lockers/L1"). From
// another fragment of the page that is no reload, as in a browser.
func (b *browser) open(fragment string) {
	b.t.Helper()
	b.run("open "+fragment, chromedp.Navigate(b.h.HTTPURL+"/"+fragment))
}

// login logs in through the login page as user.
func (b *browser) login(user, password string) {
	b.t.Helper()
	b.open("#/")
	b.run("log in",
		chromedp.WaitVisible(chromedp.CSS("#username")),
		clear("#username"),
		clear("#password"),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#cards")),
	)
}

// clear empties an input as a person does (with an input event).
func clear(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.querySelector(%q); e.value = ""; e.dispatchEvent(new Event('input', {bubbles: true})) })()`, sel))
}

// setValue types into a filter field the way a person does (input events).
func (b *browser) setValue(sel, value string) {
	b.t.Helper()
	b.run("set "+sel,
		clear(sel),
		chromedp.SendKeys(chromedp.CSS(sel), value),
	)
}

// selectValue picks an option of a <select> and fires its change event.
func (b *browser) selectValue(sel, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event('change', {bubbles: true})) })()`, sel, value)
	b.run("select "+sel, chromedp.Evaluate[chromedp.Void](js))
}

// screenshot saves a PNG of the viewport as name.png in the artefacts directory.
func (b *browser) screenshot(name string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '-'
		}
		return r
	}, s)
}

// rowJS is a JavaScript expression with the text of a locker's row in the fleet list.
func rowJS(id string) string {
	return fmt.Sprintf(`((document.querySelector('[data-locker=%q]')||{}).innerText||"")`, id)
}

// sim starts n simulated lockers (IDs prefix00001…) in segment, enrolled
// with the hub and connected over mTLS MQTT, and waits until they are online.
// opts change the configuration first (e.g. the telemetry interval).
func sim(t testing.TB, h *hubtest.Hub, prefix, segment string, n int, opts ...func(*lockersim.Config)) *lockersim.Sim {
	t.Helper()
	cfg := lockersim.DefaultConfig()
	cfg.Hub = h.MQTTAddr
	cfg.API = h.DeviceURL
	cfg.Admin = h.HTTPURL
	cfg.AdminToken = h.AdminToken
	cfg.VarDir = t.TempDir()
	cfg.DataDir = t.TempDir()
	cfg.Lockers = n
	cfg.Cells = 20
	cfg.Prefix = prefix
	cfg.Segment = segment
	cfg.Ramp = 0
	cfg.StatusEvery = 0
	for _, o := range opts {
		o(&cfg)
	}
	s, err := lockersim.NewSim(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Stop() })
	hubtest.Eventually(t, 30*time.Second, fmt.Sprintf("%d lockers %s… connected", n, prefix), func() bool {
		for _, l := range s.Lockers() {
			if !l.View(false).Connected {
				return false
			}
		}
		return true
	})
	return s
}
