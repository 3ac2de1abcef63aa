package alarms

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	fired   *prometheus.CounterVec
	notices *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *metrics {
	m := &metrics{
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_alarms_fired_total",
			Help: "Alarms raised (a new alarm, not a repeat of an open one), by kind and severity."}, []string{"kind", "severity"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_alarms_notifications_total",
			Help: "Notices enqueued to receivers (their delivery: lockerhub_outbox_* by channel), by receiver type and notice: firing, resolved, reminder, escalation."},
			[]string{"receiver_type", "notice"}),
	}
	if reg != nil {
		reg.MustRegister(m.fired, m.notices, &openCollector{pool: pool})
	}
	return m
}

var openDesc = prometheus.NewDesc("lockerhub_alarms_open",
	"Open alarms (read from PostgreSQL at scrape time), by kind, severity and state: firing or acknowledged.", []string{"kind", "severity", "state"}, nil)

// openCollector counts the open alarms at scrape time: every node sees the same.
type openCollector struct{ pool *pgxpool.Pool }

func (c *openCollector) Describe(ch chan<- *prometheus.Desc) { ch <- openDesc }

func (c *openCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := c.pool.Query(ctx, `SELECT kind, severity, state, count(*) FROM alarms_alarms WHERE state <> 'resolved' GROUP BY 1, 2, 3`)
	if err != nil {
		return // the database is away: left out of this scrape
	}
	defer rows.Close()
	for rows.Next() {
		var kind, sev, state string
		var n int64
		if rows.Scan(&kind, &sev, &state, &n) == nil {
			ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(n), kind, sev, state)
		}
	}
}
