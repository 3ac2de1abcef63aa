package ota

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	lockers          *prometheus.GaugeVec   // state
	rollouts         *prometheus.GaugeVec   // state
	transitions      *prometheus.CounterVec // state
	failures         *prometheus.CounterVec // reason class
	rejected         *prometheus.CounterVec // reason
	downloads        *prometheus.CounterVec // result
	downloadBytes    prometheus.Counter
	downloadsActive  prometheus.Gauge
	downloadsRefused *prometheus.CounterVec // reason
	ticks            prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lockers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lockerhub_ota_lockers", Help: "Lockers of running and paused rollouts, by update state."}, []string{"state"}),
		rollouts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lockerhub_ota_rollouts", Help: "Rollouts by state."}, []string{"state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_ota_transitions_total", Help: "Locker update state changes, by the state entered."}, []string{"state"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_ota_failures_total", Help: "Failed update attempts (retried or final), by reason (download, hash_mismatch, bad_signature, install, timeout, refused, installed_without_download, wrong_version, other)."}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_ota_status_rejected_total", Help: "ota/status reports not taken, by reason (invalid, unknown_rollout, unknown_version, stale, out_of_order, installed_without_download, dropped)."}, []string{"reason"}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_ota_downloads_total", Help: "Artifact download responses served, by result (complete, partial, aborted)."}, []string{"result"}),
		downloadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_ota_download_bytes_total", Help: "Artifact bytes sent to lockers."}),
		downloadsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lockerhub_ota_downloads_active", Help: "Artifact downloads in progress."}),
		downloadsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_ota_downloads_refused_total", Help: "Download requests refused, by reason (busy: 503, not_in_rollout: 403)."}, []string{"reason"}),
		ticks: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lockerhub_ota_engine_tick_seconds", Help: "Time of one pass of the rollout engine.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5}}),
	}
	for _, s := range States {
		m.lockers.WithLabelValues(s)
		m.transitions.WithLabelValues(s)
	}
	for _, s := range []string{RolloutDraft, RolloutRunning, RolloutPaused, RolloutCompleted, RolloutCancelled, RolloutAborted} {
		m.rollouts.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.lockers, m.rollouts, m.transitions, m.failures, m.rejected, m.downloads, m.downloadBytes,
			m.downloadsActive, m.downloadsRefused, m.ticks)
	}
	return m
}
