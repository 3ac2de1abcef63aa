package telemetry

import "github.com/prometheus/client_golang/prometheus"

type ingestMetrics struct {
	received      prometheus.Counter
	stored        prometheus.Counter
	duplicates    prometheus.Counter
	rejected      *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	notTaken      *prometheus.CounterVec
	failures      prometheus.Counter
	commitSeconds prometheus.Histogram
	batchSize     prometheus.Histogram
	dbUp          prometheus.Gauge

	rollSeconds  prometheus.Histogram
	rollMinutes  prometheus.Counter
	rollFailures prometheus.Counter
}

func newIngestMetrics(reg prometheus.Registerer, in *Ingest) *ingestMetrics {
	const p = "lockerhub_telemetry_"
	m := &ingestMetrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "samples_received_total",
			Help: "Telemetry messages handed to the ingest."}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "samples_stored_total",
			Help: "Samples written (new rows)."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "samples_duplicates_total",
			Help: "Samples that were stored already (republished after a lost PUBACK); acknowledged."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "samples_rejected_total",
			Help: "Samples refused as invalid (never stored; the locker is told to drop them) by reason: payload, unknown_metric, future."},
			[]string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "samples_dropped_total",
			Help: "Samples acknowledged without being stored, by reason: too_old (before the oldest partition or the raw retention)."},
			[]string{"reason"}),
		notTaken: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "samples_not_taken_total",
			Help: "Samples not acknowledged now (the locker resends them) by reason: queue_full, stopping, no_partition."},
			[]string{"reason"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "write_failures_total",
			Help: "Failed write attempts (the batch is kept and retried)."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: p + "commit_seconds",
			Help: "Duration of one batch transaction (COPY, insert, commit).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: p + "batch_samples",
			Help: "Samples per batch transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		dbUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "db_up",
			Help: "1 when the last telemetry write attempt succeeded, 0 while writes fail."}),
		rollSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: p + "rollup_seconds",
			Help: "Duration of one roller pass.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		rollMinutes: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "rollup_minutes_total",
			Help: "Minutes whose 1-minute rollups were (re)computed."}),
		rollFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "rollup_failures_total",
			Help: "Failed roller passes (retried at the next tick)."}),
	}
	m.dbUp.Set(1)
	reg.MustRegister(m.received, m.stored, m.duplicates, m.rejected, m.dropped, m.notTaken, m.failures,
		m.commitSeconds, m.batchSize, m.dbUp, m.rollSeconds, m.rollMinutes, m.rollFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "queue_samples",
			Help: "Samples waiting for a writer."}, func() float64 { return float64(len(in.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "queue_bytes",
			Help: "Payload bytes waiting for a writer."}, func() float64 { return float64(in.queuedBytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "acks_withheld",
			Help: "Samples taken whose batch has not committed yet (their PUBACKs wait)."}, func() float64 { return float64(in.withheld.Load()) }),
	)
	return m
}
