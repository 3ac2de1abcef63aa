package web

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics count the API's requests by route (the registered pattern,
// so the label has one value per endpoint, never a locker ID) and status.
type httpMetrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	diskFull prometheus.Counter
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_http_requests_total",
			Help: "HTTP API requests answered, by route (METHOD /pattern) and status code class (2xx, 4xx, 5xx, …)."}, []string{"route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lockerhub_http_request_duration_seconds",
			Help:    "HTTP API request durations until the handler returned, by route (a ?wait=… command waits here too).",
			Buckets: []float64{.005, .025, .1, .5, 2.5, 10}}, []string{"route"}),
		diskFull: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_http_disk_full_total",
			Help: "API requests refused because the hub's data directory is full (507 disk_full)."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.seconds, m.diskFull)
	}
	return m
}

// wrap measures h as route. Long-lived routes (the live stream) are left
// out by the caller: their duration is the session's.
func (m *httpMetrics) wrap(route string, h http.HandlerFunc) http.HandlerFunc {
	seconds := m.seconds.WithLabelValues(route)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		seconds.Observe(time.Since(start).Seconds())
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(code/100)+"xx").Inc()
	}
}

// statusWriter remembers the status code; Unwrap lets http.ResponseController
// reach the connection's own Flush, deadlines and Hijack.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("web: the connection cannot be hijacked")
}
