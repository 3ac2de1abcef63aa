package app

import (
	"context"
	"crypto/x509"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// The hub's own metrics that belong to no domain package: what it runs as,
// when its certificates end, and its PostgreSQL pool (docs/metrics.md).

var (
	buildInfoDesc = prometheus.NewDesc("lockerhub_build_info",
		"Always 1; the hub's version (git describe) and Go version as labels.", []string{"version", "goversion"}, nil)
	certExpiryDesc = prometheus.NewDesc("lockerhub_certificate_expiry_timestamp_seconds",
		"When a certificate the hub serves with or signs with ends (Unix time): ca (signs the lockers' certificates), "+
			"server (MQTT and device HTTPS), http (the API's --http-tls-cert, when set).", []string{"cert"}, nil)
	pgUpDesc = prometheus.NewDesc("lockerhub_pg_up",
		"1 when PostgreSQL answered a ping at this scrape (within 2 s), else 0.", nil, nil)
	pgConnsDesc = prometheus.NewDesc("lockerhub_pg_pool_connections",
		"The pool's PostgreSQL connections by state: acquired (in use), idle, constructing.", []string{"state"}, nil)
	pgMaxDesc = prometheus.NewDesc("lockerhub_pg_pool_max_connections",
		"The pool's connection limit (16, or the database URL's pool_max_conns).", nil, nil)
	pgWaitsDesc = prometheus.NewDesc("lockerhub_pg_pool_acquire_waits_total",
		"Acquires that found no idle connection and waited.", nil, nil)
	pgWaitSecondsDesc = prometheus.NewDesc("lockerhub_pg_pool_acquire_wait_seconds_total",
		"Time spent waiting for a connection by acquires that found none idle.", nil, nil)
)

type hubCollector struct {
	version string
	certs   map[string]*x509.Certificate
	pool    *pgxpool.Pool
}

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{buildInfoDesc, certExpiryDesc, pgUpDesc, pgConnsDesc, pgMaxDesc, pgWaitsDesc, pgWaitSecondsDesc} {
		ch <- d
	}
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(buildInfoDesc, prometheus.GaugeValue, 1, c.version, runtime.Version())
	for name, cert := range c.certs {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	up := 0.0
	if c.pool.Ping(ctx) == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(pgUpDesc, prometheus.GaugeValue, up)
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(pgConnsDesc, prometheus.GaugeValue, float64(s.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(pgConnsDesc, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(pgConnsDesc, prometheus.GaugeValue, float64(s.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(pgMaxDesc, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(pgWaitsDesc, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(pgWaitSecondsDesc, prometheus.CounterValue, s.EmptyAcquireWaitTime().Seconds())
}
