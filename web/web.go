// Package web serves the HTTP API, health and metrics for browsers, hubctl and
// partners, and the device-facing HTTPS endpoints (enrolment).
package web

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/alarms"
	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/connectors"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/ota"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/telemetry"
	"github.com/lockerhub/lockerhub/video"
)

//go:embed openapi.json
var openAPI []byte

// MaxBody bounds every request body.
const MaxBody = 1 << 20

// Check is one readiness check: nil when ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Deps are what the handlers use.
type Deps struct {
	Registry *fleet.Registry
	Twins    *fleet.Twins
	Overview *fleet.Overview
	// Commands sends commands to lockers (nil: its routes answer 503).
	Commands *fleet.Commands
	// Parcels keeps the deliveries (nil: its routes answer 503).
	Parcels *parcels.Store
	// Telemetry has the latest samples, TelemetryStore the history (nil:
	// telemetry is not wired; its routes answer 503).
	Telemetry      *telemetry.Ingest
	TelemetryStore *telemetry.Store
	// Webhooks keeps the API clients' webhook endpoints (nil: its routes
	// answer 503).
	Webhooks *outbox.Endpoints
	// Templates keeps the notification templates and reads what was sent
	// (nil: its routes answer 503).
	Templates *outbox.TemplateStore
	// Alarms keeps the alarms, silences, rules and routing (nil: its
	// routes answer 503).
	Alarms *alarms.Store
	// OTA keeps firmware artifacts and rollouts (nil: its routes answer 503).
	OTA *ota.Updater
	// Video relays the lockers' cameras to WHEP viewers, Recordings keeps
	// the clips (nil: their routes answer 503).
	Video      *video.Relay
	Recordings *video.Recordings
	// Connectors translate partners' formats (nil or empty: none served).
	Connectors connectors.Set
	// Registerer takes the web metrics (nil: not registered).
	Registerer prometheus.Registerer
	Access     *access.Store
	// Audit reads the audit log (nil: GET /api/v1/audit answers 503).
	Audit *audit.Store
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed for the caller's address in audit records (none: the
	// connection's address).
	TrustedProxies []netip.Prefix
	CAPEM          []byte
	Ready          []Check
	Gatherer       prometheus.Gatherer
	Logger         *slog.Logger
}

type route struct {
	method, path string
	public       bool
	h            http.HandlerFunc
}

// API is the handler of the --http-addr listener.
type API struct {
	d       Deps
	mux     *http.ServeMux
	routes  []route
	logins  *loginLimits
	sm      *streamMetrics
	hm      *httpMetrics
	streams streamsByUser
}

// NewAPI builds the API handler.
func NewAPI(d Deps) *API {
	a := &API{d: d, mux: http.NewServeMux(), logins: newLoginLimits(), sm: newStreamMetrics(d.Registerer)}
	// Each file of this package that serves an area lists its own routes.
	a.routes = append(a.routes,
		route{"GET", "/api/v1/openapi.json", true, a.openAPI},
		route{"GET", "/api/v1/ca.crt", true, a.caCert},
	)
	a.routes = append(a.routes, a.lockerRoutes()...)
	a.routes = append(a.routes, a.templateRoutes()...)
	a.routes = append(a.routes, a.twinRoutes()...)
	a.routes = append(a.routes, a.streamRoutes()...)
	a.routes = append(a.routes, a.overviewRoutes()...)
	a.routes = append(a.routes, a.telemetryRoutes()...)
	a.routes = append(a.routes, a.modelRoutes()...)
	a.routes = append(a.routes, a.sessionRoutes()...)
	a.routes = append(a.routes, a.auditRoutes()...)
	a.routes = append(a.routes, a.userRoutes()...)
	a.routes = append(a.routes, a.commandRoutes()...)
	a.routes = append(a.routes, a.webhookRoutes()...)
	a.routes = append(a.routes, a.parcelRoutes()...)
	a.routes = append(a.routes, a.alarmRoutes()...)
	a.routes = append(a.routes, a.otaRoutes()...)
	a.routes = append(a.routes, a.videoRoutes()...)
	a.routes = append(a.routes, a.availabilityRoutes()...)
	a.routes = append(a.routes, a.carrierRoutes()...)
	a.routes = append(a.routes, a.connectorRoutes()...)
	hm := newHTTPMetrics(d.Registerer)
	a.hm = hm
	for _, r := range a.routes {
		h := r.h
		if !r.public {
			h = a.authenticate(r) // web/auth.go: bearer token or session cookie, CSRF, role matrix
		}
		if r.path != "/api/v1/stream" { // a session, not a request: lockerhub_web_stream_*
			h = hm.wrap(r.method+" "+r.path, h)
		}
		a.mux.HandleFunc(r.method+" "+r.path, h)
	}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.HandleFunc("GET /{$}", a.dashboardIndex) // web/dashboard.go
	a.mux.HandleFunc("GET /assets/{file...}", a.dashboardAsset)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{}))
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, bodyLimit(r))
	r = a.requestActor(w, r) // web/audit.go: address and request id for audit records
	a.mux.ServeHTTP(w, r)
}

// Routes lists the API routes as "METHOD /path" (for the OpenAPI check).
func (a *API) Routes() []string {
	out := make([]string, len(a.routes))
	for i, r := range a.routes {
		out[i] = r.method + " " + r.path
	}
	return out
}

// OpenAPI returns the OpenAPI document served at /api/v1/openapi.json.
func OpenAPI() []byte { return openAPI }

func (a *API) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

func (a *API) caCert(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(a.d.CAPEM)
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := http.StatusOK
	checks := map[string]string{}
	for _, c := range a.d.Ready {
		if err := c.Fn(ctx); err != nil {
			checks[c.Name] = err.Error()
			status = http.StatusServiceUnavailable
		} else {
			checks[c.Name] = "ok"
		}
	}
	writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "checks": checks})
}

// apiError is the JSON body of every error.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	if diskFull(err) {
		// A write the request asked for found no room: say so, so the operator
		// frees space instead of reading the log for a 500.
		a.d.Logger.Error("request failed: the data directory is full", "method", r.Method, "path", r.URL.Path,
			"request_id", w.Header().Get(RequestIDHeader), "error", err)
		if a.hm != nil {
			a.hm.diskFull.Inc()
		}
		writeError(w, http.StatusInsufficientStorage, "disk_full", "the hub's data directory is full; nothing was stored: free space and try again")
		return
	}
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// The caller hung up before the answer: nothing failed at the hub
		// (the soak logged one ERROR per such request).
		a.d.Logger.Info("request abandoned by the caller", "method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get(RequestIDHeader))
		writeError(w, StatusClientClosed, "client_closed", "the request was cancelled by the caller")
		return
	}
	a.d.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get(RequestIDHeader), "error", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error; see the hub's log")
}

// StatusClientClosed is the status recorded (metrics, access log) for a
// request its caller abandoned; nobody reads the answer (nginx's 499).
const StatusClientClosed = 499

// diskFull reports whether err is a file system out of space (or quota).
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// domainError maps domain errors to HTTP; anything else is a 500.
func (a *API) domainError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, fleet.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, fleet.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, fleet.ErrExists):
		writeError(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, fleet.ErrDisabled):
		writeError(w, http.StatusConflict, "disabled", err.Error())
	case errors.Is(err, fleet.ErrTokenInvalid):
		writeError(w, http.StatusUnauthorized, "token_invalid", err.Error())
	default:
		a.internal(w, r, err)
	}
}

// readJSON decodes a JSON body strictly into v, answering 400/413 itself.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", MaxBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_json", "request body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad_json", "request body: more than one JSON value")
		return false
	}
	return true
}
