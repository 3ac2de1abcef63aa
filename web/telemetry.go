package web

import (
	"encoding/csv"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/protocol"
	"github.com/lockerhub/lockerhub/telemetry"
)

// The telemetry query API: a locker's series of one metric (raw samples or
// rollups, the store picks by range and step), its metrics, its latest
// sample, and the fleet's latest value of one metric. Series and the fleet's
// latest values come as JSON or, with format=csv or Accept: text/csv, as CSV.

// defaultTelemetryRange is the range of a series query without from and to.
const defaultTelemetryRange = 6 * time.Hour

// apiTime is how the API writes times: RFC 3339, UTC, milliseconds.
const apiTime = "2006-01-02T15:04:05.000Z07:00"

func (a *API) telemetryRoutes() []route {
	return []route{
		{"GET", "/api/v1/lockers/{id}/telemetry", false, a.telemetrySeries},
		{"GET", "/api/v1/lockers/{id}/telemetry/metrics", false, a.telemetryMetrics},
		{"GET", "/api/v1/lockers/{id}/telemetry/latest", false, a.telemetryLatest},
		{"GET", "/api/v1/fleet/telemetry/latest", false, a.fleetTelemetryLatest},
	}
}

// telemetryPoint is one point of a series in the API.
type telemetryPoint struct {
	T   string  `json:"t"`
	Avg float64 `json:"avg"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	N   int64   `json:"n"`
}

type telemetrySeriesView struct {
	LockerID string           `json:"locker_id"`
	Metric   string           `json:"metric"`
	Source   string           `json:"source"`
	StepMS   int64            `json:"step_ms"`
	From     string           `json:"from"`
	To       string           `json:"to"`
	Points   []telemetryPoint `json:"points"`
}

// telemetryReady answers 503 when the hub runs without telemetry.
func (a *API) telemetryReady(w http.ResponseWriter, store bool) bool {
	if (store && a.d.TelemetryStore == nil) || (!store && a.d.Telemetry == nil) {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "telemetry is not enabled on this hub")
		return false
	}
	return true
}

// telemetryLocker checks that the locker of the path exists (404 otherwise).
func (a *API) telemetryLocker(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if _, err := a.d.Registry.Get(r.Context(), id); err != nil {
		a.domainError(w, r, err)
		return "", false
	}
	return id, true
}

// metricParam reads ?metric=, answering 400 itself.
func metricParam(w http.ResponseWriter, r *http.Request, hint string) (string, bool) {
	m := r.URL.Query().Get("metric")
	switch {
	case m == "":
		writeError(w, http.StatusBadRequest, "invalid", "metric is required, e.g. ?metric=temp_c"+hint)
		return "", false
	case !protocol.ValidMetricName(m):
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("metric %q: want a metric name such as temp_c (lower snake case, starting with a letter, at most 48 characters)", m))
		return "", false
	}
	return m, true
}

// wantCSV: format=csv, or no format and an Accept header that prefers CSV.
// A format other than csv or json is a 400.
func wantCSV(w http.ResponseWriter, r *http.Request) (csvOut, ok bool) {
	switch f := r.URL.Query().Get("format"); f {
	case "csv":
		return true, true
	case "json":
		return false, true
	case "":
		for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			switch mt {
			case "text/csv":
				return true, true
			case "application/json", "*/*", "application/*":
				return false, true
			}
		}
		return false, true
	default:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("format %q: want json or csv", f))
		return false, false
	}
}

// parseStep reads a step as a Go duration ("5m", "90s") or as seconds ("300").
func parseStep(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if !(secs >= 0 && secs <= 366*24*3600) { // NaN too
			return 0, errors.New("out of range")
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("bad step")
	}
	return d, nil
}

// timeRange reads ?from= and ?to= (RFC 3339; default: the last 6 h up to now).
func timeRange(w http.ResponseWriter, r *http.Request, now time.Time) (from, to time.Time, ok bool) {
	q := r.URL.Query()
	to = now
	if s := q.Get("to"); s != "" {
		t, err := parseAPITime(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "to: want an RFC 3339 time such as 2026-11-23T03:12:00Z")
			return from, to, false
		}
		to = t
	}
	from = to.Add(-defaultTelemetryRange)
	if s := q.Get("from"); s != "" {
		t, err := parseAPITime(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "from: want an RFC 3339 time such as 2026-11-23T03:12:00Z")
			return from, to, false
		}
		from = t
	}
	if !from.Before(to) {
		writeError(w, http.StatusBadRequest, "invalid", "from must be before to")
		return from, to, false
	}
	return from, to, true
}

// parseAPITime parses RFC 3339. An offset's "+" that came unescaped in a
// query string arrives as a space: it is taken as the "+" it was.
func parseAPITime(s string) (time.Time, error) {
	if i := strings.LastIndexByte(s, ' '); i > 0 {
		s = s[:i] + "+" + s[i+1:]
	}
	return time.Parse(time.RFC3339Nano, s)
}

// telemetrySeries answers one metric of one locker over [from, to).
func (a *API) telemetrySeries(w http.ResponseWriter, r *http.Request) {
	if !a.telemetryReady(w, true) {
		return
	}
	id, ok := a.telemetryLocker(w, r)
	if !ok {
		return
	}
	metric, ok := metricParam(w, r, "; GET /api/v1/lockers/"+id+"/telemetry/metrics lists the locker's metrics")
	if !ok {
		return
	}
	from, to, ok := timeRange(w, r, time.Now())
	if !ok {
		return
	}
	step, err := parseStep(r.URL.Query().Get("step"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "step: want a duration such as 5m or 300 (seconds); 0 or none picks one")
		return
	}
	csvOut, ok := wantCSV(w, r)
	if !ok {
		return
	}
	s, err := a.d.TelemetryStore.Series(r.Context(), id, metric, from, to, step)
	if errors.Is(err, telemetry.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	v := telemetrySeriesView{
		LockerID: id, Metric: metric, Source: s.Source, StepMS: s.Step.Milliseconds(),
		From: from.UTC().Format(apiTime), To: to.UTC().Format(apiTime),
		Points: make([]telemetryPoint, len(s.Points)),
	}
	for i, p := range s.Points {
		v.Points[i] = telemetryPoint{T: p.T.UTC().Format(apiTime), Avg: p.Avg, Min: p.Min, Max: p.Max, N: p.N}
	}
	if !csvOut {
		writeJSON(w, http.StatusOK, v)
		return
	}
	rows := make([][]string, 0, len(v.Points)+1)
	rows = append(rows, []string{"t", "avg", "min", "max", "n"})
	for _, p := range v.Points {
		rows = append(rows, []string{p.T, fmtFloat(p.Avg), fmtFloat(p.Min), fmtFloat(p.Max), strconv.FormatInt(p.N, 10)})
	}
	writeCSV(w, fmt.Sprintf("%s-%s-%s.csv", id, metric, from.UTC().Format("20060102T150405Z")), rows)
}

// telemetryMetrics lists the metrics a locker has reported.
func (a *API) telemetryMetrics(w http.ResponseWriter, r *http.Request) {
	if !a.telemetryReady(w, true) {
		return
	}
	id, ok := a.telemetryLocker(w, r)
	if !ok {
		return
	}
	ms, err := a.d.TelemetryStore.Metrics(r.Context(), id)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if ms == nil {
		ms = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"metrics": ms})
}

// telemetryLatest answers the newest sample the hub has of a locker.
func (a *API) telemetryLatest(w http.ResponseWriter, r *http.Request) {
	if !a.telemetryReady(w, false) {
		return
	}
	id, ok := a.telemetryLocker(w, r)
	if !ok {
		return
	}
	s, ok := a.d.Telemetry.Latest(id)
	if !ok {
		writeError(w, http.StatusNotFound, "no_data", "no telemetry from "+id+" yet")
		return
	}
	writeJSON(w, http.StatusOK, latestView(id, s))
}

// fleetTelemetryLatest lists the latest value of one metric of every locker
// that has one, optionally only lockers of a filter (segment, model, carrier,
// status, q; as the fleet overview).
func (a *API) fleetTelemetryLatest(w http.ResponseWriter, r *http.Request) {
	if !a.telemetryReady(w, false) {
		return
	}
	metric, ok := metricParam(w, r, "")
	if !ok {
		return
	}
	f, ok := rowFilter(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid", "status must be online, offline or unknown")
		return
	}
	csvOut, ok := wantCSV(w, r)
	if !ok {
		return
	}
	vals := a.d.Telemetry.FleetLatest(metric)
	if f != (fleet.RowFilter{}) && a.d.Overview != nil {
		in := map[string]bool{}
		for _, row := range a.d.Overview.Rows(f) { // as GET /api/v1/fleet/overview filters
			in[row.ID] = true
		}
		vals = slices.DeleteFunc(vals, func(v telemetry.LatestValue) bool { return !in[v.LockerID] })
	}
	type value struct {
		LockerID string  `json:"locker_id"`
		TS       string  `json:"ts"`
		Value    float64 `json:"value"`
	}
	out := make([]value, len(vals))
	for i, v := range vals {
		out[i] = value{LockerID: v.LockerID, TS: v.TS.UTC().Format(apiTime), Value: v.Value}
	}
	if !csvOut {
		writeJSON(w, http.StatusOK, map[string]any{"metric": metric, "values": out})
		return
	}
	rows := make([][]string, 0, len(out)+1)
	rows = append(rows, []string{"locker_id", "ts", "value"})
	for _, v := range out {
		rows = append(rows, []string{v.LockerID, v.TS, fmtFloat(v.Value)})
	}
	writeCSV(w, fmt.Sprintf("fleet-%s-%s.csv", metric, time.Now().UTC().Format("20060102T150405Z")), rows)
}

// telemetrySample is a sample in the API: as the locker sent it (ts is its
// clock), with when the hub received it.
type telemetrySample struct {
	LockerID string             `json:"locker_id"`
	TS       string             `json:"ts"`
	Boot     uint32             `json:"boot"`
	Seq      uint64             `json:"seq"`
	Received string             `json:"received"`
	M        map[string]float64 `json:"m"`
}

func latestView(id string, s telemetry.Sample) telemetrySample {
	return telemetrySample{LockerID: id, TS: s.TS.UTC().Format(apiTime), Boot: s.Boot, Seq: s.Seq,
		Received: s.Received.UTC().Format(apiTime), M: s.M}
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// writeCSV answers rows as a CSV attachment named filename.
func writeCSV(w http.ResponseWriter, filename string, rows [][]string) {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": safeFilename(filename)}))
	h.Set("X-Content-Type-Options", "nosniff")
	cw := csv.NewWriter(w)
	_ = cw.WriteAll(rows)
}

// safeFilename keeps letters, digits and . _ - of a name (locker IDs are free text).
func safeFilename(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			return c
		}
		return '_'
	}, s)
}
