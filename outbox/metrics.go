package outbox

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	sent     *prometheus.CounterVec
	failed   *prometheus.CounterVec
	waiting  *prometheus.CounterVec
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool, configured map[string]bool) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_outbox_sent_total",
			Help: "Messages delivered, by channel."}, []string{"channel"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_outbox_failed_total",
			Help: "Messages given up (state failed), by channel and reason: refused, max_attempts, max_age, template, invalid."}, []string{"channel", "reason"}),
		waiting: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_outbox_waiting_total",
			Help: "Sends put off because the channel is not configured or the client has no webhook endpoint, by channel and reason."}, []string{"channel", "reason"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_outbox_attempts_total",
			Help: "Send attempts, by channel and result: sent, error, waiting."}, []string{"channel", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lockerhub_outbox_send_duration_seconds",
			Help:    "Duration of one send attempt, by channel and result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"channel", "result"}),
	}
	for _, ch := range Channels {
		m.sent.WithLabelValues(ch)
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.failed, m.waiting, m.attempts, m.latency, &queueCollector{pool: pool, configured: configured})
	}
	return m
}

func (m *metrics) observe(channel, result string, d time.Duration) {
	m.attempts.WithLabelValues(channel, result).Inc()
	m.latency.WithLabelValues(channel, result).Observe(d.Seconds())
}

// queueCollector reads the queue from PostgreSQL at scrape time (all nodes
// share it): the pending messages and the age of the oldest, by channel.
type queueCollector struct {
	pool       *pgxpool.Pool
	configured map[string]bool
}

var (
	pendingDesc = prometheus.NewDesc("lockerhub_outbox_pending_messages",
		"Messages not yet delivered or given up (the queue depth), by channel.", []string{"channel"}, nil)
	oldestDesc = prometheus.NewDesc("lockerhub_outbox_oldest_pending_age_seconds",
		"Age of the oldest pending message, by channel (0 when none).", []string{"channel"}, nil)
	configuredDesc = prometheus.NewDesc("lockerhub_outbox_channel_configured",
		"1 when the channel has its gateway configured on this node; messages of a channel at 0 wait.", []string{"channel"}, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestDesc
	ch <- configuredDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range Channels {
		v := 0.0
		if c.configured[name] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(configuredDesc, prometheus.GaugeValue, v, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pending := map[string]float64{}
	oldest := map[string]float64{}
	rows, err := c.pool.Query(ctx, `SELECT channel, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM outbox_messages WHERE state = 'pending' GROUP BY channel`)
	if err == nil {
		for rows.Next() {
			var name string
			var n int64
			var age float64
			if rows.Scan(&name, &n, &age) == nil {
				pending[name], oldest[name] = float64(n), age
			}
		}
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		// The database is away: leave the queue out of this scrape rather
		// than fail the whole /metrics (lockerhub_telemetry_db_up and
		// /readyz say the database is down).
		return
	}
	for _, name := range Channels {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, pending[name], name)
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, oldest[name], name)
	}
}
