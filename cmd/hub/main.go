// Command hub runs lockerhub: the MQTT broker for the lockers, the HTTP API and
// everything on top. Flags have HUB_* environment equivalents.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/pg"
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	var cfg app.Config
	var hostnames, logFormat, logLevel string
	var showVersion bool
	fs.StringVar(&cfg.DataDir, "data-dir", env("HUB_DATA_DIR", "./var"), "data directory: CA, server certificate, admin credential (env HUB_DATA_DIR)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", env("HUB_DATABASE_URL", pg.DefaultURL), "PostgreSQL URL (env HUB_DATABASE_URL)")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", env("HUB_MQTT_ADDR", ":8883"), "MQTT over mutual TLS for lockers (env HUB_MQTT_ADDR)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", env("HUB_HTTP_ADDR", ":8080"), "HTTP API, dashboard, /metrics (env HUB_HTTP_ADDR)")
	fs.StringVar(&cfg.DeviceAddr, "device-addr", env("HUB_DEVICE_ADDR", ":8443"), "HTTPS for lockers: enrolment, renewal, firmware (env HUB_DEVICE_ADDR)")
	fs.StringVar(&cfg.HTTPTLSCert, "http-tls-cert", env("HUB_HTTP_TLS_CERT", ""), "serve --http-addr over TLS with this certificate (PEM); plain HTTP when empty (env HUB_HTTP_TLS_CERT)")
	fs.StringVar(&cfg.HTTPTLSKey, "http-tls-key", env("HUB_HTTP_TLS_KEY", ""), "the key of --http-tls-cert (PEM) (env HUB_HTTP_TLS_KEY)")
	fs.StringVar(&hostnames, "hostnames", env("HUB_HOSTNAMES", "localhost,127.0.0.1,::1"), "names and addresses in the server certificate, comma-separated (env HUB_HOSTNAMES)")
	fs.StringVar(&logFormat, "log-format", env("HUB_LOG_FORMAT", "text"), "log format: text or json (env HUB_LOG_FORMAT)")
	fs.StringVar(&logLevel, "log-level", env("HUB_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env HUB_LOG_LEVEL)")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if showVersion {
		fmt.Println("hub", version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "hub: --log-level:", err)
		return 2
	}
	opts := &slog.HandlerOptions{Level: level}
	switch logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, opts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	default:
		fmt.Fprintf(os.Stderr, "hub: --log-format must be text or json, not %q\n", logFormat)
		return 2
	}
	for _, h := range strings.Split(hostnames, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.Hostnames = append(cfg.Hostnames, h)
		}
	}
	cfg.Logger = cfg.Logger.With("version", version)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.New(cfg).Run(ctx); err != nil {
		cfg.Logger.Error("hub failed", "error", err)
		fmt.Fprintln(os.Stderr, "hub:", err)
		return 1
	}
	return 0
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
