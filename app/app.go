// Package app is the composition root: it builds every component from a
// Config, starts them in order and stops them in reverse.
package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/alarms"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/connectors"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/ota"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/telemetry"
	"github.com/lockerhub/lockerhub/video"
	"github.com/lockerhub/lockerhub/web"
)

// Config is everything the hub needs; cmd/hub fills it from flags and HUB_* env.
type Config struct {
	DataDir         string
	DatabaseURL     string
	MQTTAddr        string
	HTTPAddr        string
	DeviceAddr      string
	Hostnames       []string
	ShutdownTimeout time.Duration
	ConnectTimeout  time.Duration        // from TLS handshake to MQTT CONNECT; 10 s
	AcceptRate      float64              // locker connections accepted per second (a reconnect storm waits in the kernel's backlog beyond it); 0: the broker's 3000
	HTTPTLSCert     string               // optional: serve --http-addr over TLS with this certificate …
	HTTPTLSKey      string               // … and key (PEM files)
	TrustedProxies  []netip.Prefix       // reverse proxies whose X-Forwarded-For names the caller in audit records
	Telemetry       telemetry.Config     // retention, unknown-metric policy, ingest sizing; zero values take its defaults
	Commands        fleet.CommandsConfig // door confirmation window, re-send period; zero values take its defaults
	Outbox          outbox.Config        // webhooks, SMS gateway, SMTP, templates, retries; zero values take its defaults
	Asks            fleet.AsksConfig     // ask workers, queue, per-locker bound, retention; zero values take its defaults
	// Parcels: storage period, reminders, code rate limit; its Keys (pickup
	// code secrets) and Outbox (notifications, webhooks) are wired by app.
	Parcels parcels.Config
	// Access: the cache of authenticated credentials (TTL, size); its
	// Registerer is wired by app.
	Access access.Config
	// Alarms: evaluation and notification timing; zero values take its defaults.
	Alarms alarms.Config
	// OTA: firmware rollouts (download limit, step timeouts, retries, the
	// download URL lockers are given); zero values take its defaults.
	OTA ota.Config
	// Video: the camera relay's ICE UDP address and host candidates, viewer
	// and stream limits, recordings (directory default <DataDir>/recordings).
	Video video.Config
	// Cluster: several hub nodes on one PostgreSQL (docs/scaling.md); its
	// Node names this one, empty (the default) runs a single hub.
	Cluster fleet.ClusterConfig
	Logger  *slog.Logger
	Out     io.Writer // where the admin credential is printed on first start
	// Version is the hub's build (lockerhub_build_info); empty: "dev".
	Version string
}

// Defaults fills what is unset with values that work on a laptop.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = "./var"
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = pg.DefaultURL
	}
	if c.MQTTAddr == "" {
		c.MQTTAddr = ":8883"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8080"
	}
	if c.DeviceAddr == "" {
		c.DeviceAddr = ":8443"
	}
	if len(c.Hostnames) == 0 {
		c.Hostnames = []string{"localhost", "127.0.0.1", "::1"}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
}

// Migrations lists every package's schema in the order they apply.
func Migrations() []pg.Migrations {
	return []pg.Migrations{access.Migrations(), audit.Migrations(), fleet.Migrations(), telemetry.Migrations(), outbox.Migrations(), parcels.Migrations(), alarms.Migrations(), video.Migrations(), ota.Migrations()}
}

// App is a running hub.
type App struct {
	cfg Config
	log *slog.Logger

	Metrics  *prometheus.Registry
	CA       *pki.CA
	Pool     *pgxpool.Pool
	Registry *fleet.Registry
	Twins    *fleet.Twins
	Overview *fleet.Overview
	Broker   *broker.Broker
	Commands *fleet.Commands
	Cluster  *fleet.Cluster // nil: a single hub
	// Asks answers the lockers' asks (register methods with Asks.Register);
	// CodeKeys holds the per-locker pickup-code secrets and delivers them
	// (codes.key); LockerSync delivers offline parcel lists (parcels.sync).
	Asks       *fleet.Asks
	CodeKeys   *fleet.CodeKeys
	LockerSync *fleet.LockerSync
	Parcels    *parcels.Store
	Alarms     *alarms.Store
	Access     *access.Store
	// OTA keeps firmware artifacts and runs the rollouts.
	OTA *ota.Updater
	// Video relays the lockers' cameras (WHEP viewers); Recordings keeps
	// the clips taken on alarms.
	Video      *video.Relay
	Recordings *video.Recordings
	// Telemetry takes the lockers' samples and knows each one's latest;
	// TelemetryStore answers series queries.
	Telemetry      *telemetry.Ingest
	TelemetryStore *telemetry.Store
	// Outbox sends webhooks, SMS and e-mail; Webhooks are the API clients' endpoints.
	Outbox     *outbox.Dispatcher
	Webhooks   *outbox.Endpoints
	AdminToken string
	// AdminPassword is the dashboard password of user "admin" as kept in the
	// data dir (empty when an operator changed it and deleted the file).
	AdminPassword string

	httpLn, deviceLn net.Listener
	httpSrv          *http.Server
	deviceSrv        *http.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// DefaultGCPercent is the hub's Go GC target (GOGC), set by cmd/hub: with
// 10,000 connections the live heap is a few hundred MB, and at Go's default
// of 100 a collection ran every few seconds; its marking and the allocation
// assists it asks of busy goroutines made the tail of command latency
// (BenchmarkCommands: p99 60-100 ms at 100, 15 ms at 400; docs/benchmarks.md).
const DefaultGCPercent = 400

// New returns an app for cfg; Start or Run it.
func New(cfg Config) *App {
	cfg.Defaults()
	return &App{cfg: cfg, log: cfg.Logger}
}

// Run starts the hub and serves until ctx ends, then shuts down in order.
func (a *App) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		a.Shutdown()
		return err
	}
	<-ctx.Done()
	a.log.Info("shutting down")
	a.Shutdown()
	return nil
}

// Start brings every component up; on error, call Shutdown to release what started.
func (a *App) Start(ctx context.Context) error {
	cfg := a.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ca, err := pki.LoadOrCreateCA(cfg.DataDir)
	if err != nil {
		return err
	}
	a.CA = ca
	serverCert, err := ca.LoadOrCreateServerCert(cfg.DataDir, cfg.Hostnames)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}

	if a.Pool, err = connectDB(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	n, err := pg.Migrate(ctx, a.Pool, Migrations()...)
	if err != nil {
		return err
	}
	if n > 0 {
		a.log.Info("migrations applied", "count", n)
	}

	a.Metrics = prometheus.NewRegistry()
	a.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	certs := map[string]*x509.Certificate{"ca": ca.Cert}
	if leaf, err := x509.ParseCertificate(serverCert.Certificate[0]); err == nil {
		certs["server"] = leaf
	}
	hub := &hubCollector{version: cmp.Or(cfg.Version, "dev"), certs: certs, pool: a.Pool}
	a.Metrics.MustRegister(hub)

	accessCfg := cfg.Access
	accessCfg.Registerer = a.Metrics
	accessStore := access.NewStore(a.Pool, accessCfg)
	a.Access = accessStore
	if a.AdminToken, err = a.ensureAdminToken(ctx, accessStore); err != nil {
		return err
	}
	if a.AdminPassword, err = a.ensureAdminPassword(ctx, accessStore); err != nil {
		return err
	}

	a.Registry = fleet.NewRegistry(a.Pool, ca, a.log.With("component", "fleet"))
	if err := a.Registry.Load(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.Registry.Run(runCtx) }()
	if err := a.startTwins(ctx, runCtx); err != nil {
		return err
	}
	if err := a.startTelemetry(ctx); err != nil {
		return err
	}
	// Partners' own formats: a connector also renders the status callbacks
	// of an endpoint that asks for its format.
	conns := connectors.Default()
	outboxCfg := cfg.Outbox
	if outboxCfg.WebhookFormats == nil {
		outboxCfg.WebhookFormats = webhookFormats(conns)
	}
	if a.Outbox, err = outbox.New(a.Pool, outboxCfg, a.log.With("component", "outbox"), a.Metrics); err != nil {
		return err
	}
	a.Webhooks = outbox.NewEndpoints(a.Pool, conns.Names()...)
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.Outbox.Run(runCtx) }()

	ticketKeys, err := pki.LoadOrRotateTicketKeys(cfg.DataDir, time.Now(), ticketKeyRotation)
	if err != nil {
		return fmt.Errorf("TLS session ticket keys: %w", err)
	}
	a.Broker, err = broker.New(broker.Config{
		TicketKeys:     ticketKeys,
		Addr:           cfg.MQTTAddr,
		ConnectTimeout: cfg.ConnectTimeout,
		AcceptRate:     cfg.AcceptRate,
		TLS:            &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: ca.Pool()},
		Logger:         a.log.With("component", "broker"),
		Registerer:     a.Metrics,
	}, a.Registry, presence{a.Registry, a.Overview})
	if err != nil {
		return err
	}
	a.Registry.SetConnections(a.Broker)
	if err := a.startCommands(ctx, runCtx); err != nil {
		return err
	}
	if err := a.startAsks(ctx, runCtx); err != nil {
		return err
	}
	if err := a.startParcels(ctx, runCtx); err != nil {
		return err
	}
	if err := a.startAlarms(ctx, runCtx); err != nil {
		return err
	}
	if err := a.startVideo(runCtx); err != nil {
		return err
	}
	if err := a.startOTA(); err != nil {
		return err
	}
	a.routeDeviceMessages(runCtx)
	if err := a.Broker.Start(); err != nil {
		return err
	}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.rotateTicketKeys(runCtx) }()

	deps := web.Deps{
		Registry:       a.Registry,
		Twins:          a.Twins,
		Overview:       a.Overview,
		Commands:       a.Commands,
		Parcels:        a.Parcels,
		Access:         accessStore,
		Audit:          audit.NewStore(a.Pool),
		CAPEM:          ca.CertPEM,
		Gatherer:       a.Metrics,
		Registerer:     a.Metrics,
		Logger:         a.log.With("component", "web"),
		TrustedProxies: cfg.TrustedProxies,
		Ready: []web.Check{
			{Name: "database", Fn: func(ctx context.Context) error { return a.Pool.Ping(ctx) }},
			{Name: "migrations", Fn: func(ctx context.Context) error {
				n, err := pg.Pending(ctx, a.Pool, Migrations()...)
				if err == nil && n > 0 {
					err = fmt.Errorf("%d migrations pending", n)
				}
				return err
			}},
			{Name: "telemetry", Fn: a.Telemetry.Ready},
			{Name: "broker", Fn: func(context.Context) error {
				if !a.Broker.Listening() {
					return errors.New("MQTT listener is not accepting")
				}
				return nil
			}},
		},
		Telemetry:      a.Telemetry,
		TelemetryStore: a.TelemetryStore,
		Webhooks:       a.Webhooks,
		Templates:      a.Outbox.Templates(),
		Alarms:         a.Alarms,
		OTA:            a.OTA,
		Video:          a.Video,
		Recordings:     a.Recordings,
		Connectors:     conns,
	}
	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	a.httpSrv = &http.Server{Handler: web.NewAPI(deps), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	deviceTLS := pki.Harden(&tls.Config{
		Certificates:     []tls.Certificate{serverCert},
		ClientCAs:        ca.Pool(),
		ClientAuth:       tls.VerifyClientCertIfGiven,
		MinVersion:       tls.VersionTLS12,
		VerifyConnection: broker.VerifyNotRevoked(a.Registry),
	})
	if a.deviceLn, err = net.Listen("tcp", cfg.DeviceAddr); err != nil {
		return fmt.Errorf("device listener: %w", err)
	}
	a.deviceSrv = &http.Server{Handler: web.NewDeviceAPI(deps), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	httpLn := a.httpLn
	if cfg.HTTPTLSCert != "" || cfg.HTTPTLSKey != "" {
		pair, err := tls.LoadX509KeyPair(cfg.HTTPTLSCert, cfg.HTTPTLSKey)
		if err != nil {
			return fmt.Errorf("--http-tls-cert/--http-tls-key: %w", err)
		}
		httpLn = tls.NewListener(a.httpLn, pki.Harden(&tls.Config{Certificates: []tls.Certificate{pair}}))
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
			hub.certs["http"] = leaf // read at scrape time, after Start
		}
	}
	a.serve(a.httpSrv, httpLn)
	a.serve(a.deviceSrv, tls.NewListener(a.deviceLn, deviceTLS))
	a.runOTA(runCtx)

	if err := a.writeLocalInfo(); err != nil {
		// A convenience for local tools, not state: a full data dir must not
		// keep the hub from serving what needs no disk.
		a.log.Error("writing the local hub info failed; hubctl and lockersim will not find this hub by it", "file", apiclient.HubInfoFile, "error", err)
	}
	a.log.Info("hub ready", "mqtt", a.MQTTAddr(), "http", a.HTTPAddr(), "device", a.DeviceAddr(), "data_dir", cfg.DataDir)
	return nil
}

func (a *App) serve(srv *http.Server, ln net.Listener) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server stopped", "error", err)
		}
	}()
}

// Shutdown stops the components in reverse order of start: HTTP drains, the
// broker disconnects lockers, background writers flush, the pool closes. It is
// bounded by the configured shutdown timeout.
func (a *App) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	for _, s := range []*http.Server{a.httpSrv, a.deviceSrv} {
		if s != nil {
			if err := s.Shutdown(ctx); err != nil {
				_ = s.Close()
			}
		}
	}
	for _, ln := range []net.Listener{a.httpLn, a.deviceLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if a.Broker != nil {
		a.Broker.Close()
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if a.Pool != nil {
		a.Pool.Close()
	}
}

// ticketKeyRotation is how long one TLS session ticket key encrypts new tickets.
const ticketKeyRotation = 24 * time.Hour

// rotateTicketKeys checks every hour whether the newest ticket key is due for
// rotation and hands the keys to the broker.
func (a *App) rotateTicketKeys(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keys, err := pki.LoadOrRotateTicketKeys(a.cfg.DataDir, time.Now(), ticketKeyRotation)
		if err != nil {
			a.log.Error("rotating TLS session ticket keys failed; the current keys stay", "error", err)
			continue
		}
		a.Broker.SetTicketKeys(keys)
	}
}

// MQTTAddr, HTTPAddr and DeviceAddr are the bound addresses (useful with port 0).
func (a *App) MQTTAddr() string { return a.Broker.Addr() }

// HTTPAddr is the bound API address.
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// DeviceAddr is the bound device HTTPS address.
func (a *App) DeviceAddr() string { return a.deviceLn.Addr().String() }

func connectDB(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := pg.Connect(ctx, url, pg.DefaultMaxConns)
	if err != nil && pg.IsCode(err, "3D000") { // invalid_catalog_name: create it once
		if err := pg.EnsureDatabase(ctx, url); err != nil {
			return nil, err
		}
		pool, err = pg.Connect(ctx, url, pg.DefaultMaxConns)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (set --database-url or HUB_DATABASE_URL; `make run` starts a local PostgreSQL)", err)
	}
	return pool, nil
}

// ensureAdminToken keeps the admin credential in the data dir: it reuses the
// stored one while the database knows it, else creates one, stores it (0600)
// and prints it once.
func (a *App) ensureAdminToken(ctx context.Context, store *access.Store) (string, error) {
	path := filepath.Join(a.cfg.DataDir, apiclient.AdminTokenFile)
	if data, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(data))
		p, err := store.Authenticate(ctx, tok)
		if err == nil && p.Role == access.RoleAdmin {
			return tok, nil
		}
		if err != nil && !errors.Is(err, access.ErrUnauthenticated) {
			return "", err
		}
	}
	tok, err := store.CreateToken(ctx, "admin", access.RoleAdmin)
	if err != nil {
		return "", err
	}
	if err := pki.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store admin credential: %w", err)
	}
	fmt.Fprintf(a.cfg.Out, "\nAdmin credential (shown once; stored in %s, mode 0600):\n  %s\n\n", path, tok)
	return tok, nil
}

// ensureAdminPassword makes sure somebody can log in to the dashboard. On the
// first start it creates the user "admin" with a random password, stores the
// password (0600) next to the admin token and prints it once. While the file
// exists it is taken as is. Deleting it and restarting the hub gives "admin" a
// new password: the way back in for an operator who lost it.
func (a *App) ensureAdminPassword(ctx context.Context, store *access.Store) (string, error) {
	path := filepath.Join(a.cfg.DataDir, apiclient.AdminPasswordFile)
	_, err := store.User(ctx, access.AdminUser)
	exists := err == nil
	if err != nil && !errors.Is(err, access.ErrNotFound) {
		return "", err
	}
	if exists {
		data, err := os.ReadFile(path)
		if err == nil {
			return strings.TrimSpace(string(data)), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("read admin password: %w", err)
		}
	}
	pw := access.RandomPassword()
	if exists {
		err = store.SetPassword(ctx, access.AdminUser, pw)
	} else {
		_, err = store.CreateUser(ctx, access.AdminUser, pw, access.RoleAdmin)
	}
	if err != nil {
		return "", fmt.Errorf("admin user: %w", err)
	}
	if err := pki.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store admin password: %w", err)
	}
	fmt.Fprintf(a.cfg.Out, "\nDashboard login (shown once; stored in %s, mode 0600):\n  user %s, password %s\n\n", path, access.AdminUser, pw)
	return pw, nil
}

func (a *App) writeLocalInfo() error {
	scheme := "http://"
	if a.cfg.HTTPTLSCert != "" {
		scheme = "https://"
	}
	info := apiclient.Local{
		HTTP:   scheme + localAddr(a.HTTPAddr()),
		MQTT:   localAddr(a.MQTTAddr()),
		Device: "https://" + localAddr(a.DeviceAddr()),
	}
	data, _ := json.MarshalIndent(info, "", "  ")
	return pki.WriteFile(filepath.Join(a.cfg.DataDir, apiclient.HubInfoFile), append(data, '\n'), 0o644)
}

// localAddr turns a bound address into one a local client can dial.
func localAddr(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
