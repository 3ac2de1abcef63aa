// Command hub runs lockerhub: the MQTT broker for the lockers, the HTTP API and
// everything on top. Flags have HUB_* environment equivalents.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/pg"

	// Mozilla's root certificates, used only where the system has none (the
	// FROM scratch image, deploy/Dockerfile), for what the hub calls out to
	// over TLS: webhooks, the SMS gateway, SMTP with STARTTLS.
	_ "golang.org/x/crypto/x509roots/fallback"
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
	fs.Float64Var(&cfg.AcceptRate, "mqtt-accept-rate", 3000, "locker connections accepted per second; a reconnect storm beyond it waits in the kernel's listen backlog (docs/reliability.md) (env HUB_MQTT_ACCEPT_RATE)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", env("HUB_HTTP_ADDR", ":8080"), "HTTP API, dashboard, /metrics (env HUB_HTTP_ADDR)")
	fs.StringVar(&cfg.DeviceAddr, "device-addr", env("HUB_DEVICE_ADDR", ":8443"), "HTTPS for lockers: enrolment, renewal, firmware (env HUB_DEVICE_ADDR)")
	fs.StringVar(&cfg.HTTPTLSCert, "http-tls-cert", env("HUB_HTTP_TLS_CERT", ""), "serve --http-addr over TLS with this certificate (PEM); plain HTTP when empty (env HUB_HTTP_TLS_CERT)")
	fs.StringVar(&cfg.HTTPTLSKey, "http-tls-key", env("HUB_HTTP_TLS_KEY", ""), "the key of --http-tls-cert (PEM) (env HUB_HTTP_TLS_KEY)")
	fs.Func("trusted-proxies", "reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For names the caller's address in the audit log; none: the connection's address (env HUB_TRUSTED_PROXIES)",
		func(s string) error { return parsePrefixes(s, &cfg.TrustedProxies) })
	if v := os.Getenv("HUB_TRUSTED_PROXIES"); v != "" {
		if err := parsePrefixes(v, &cfg.TrustedProxies); err != nil {
			fmt.Fprintln(os.Stderr, "hub: HUB_TRUSTED_PROXIES:", err)
			return 2
		}
	}
	fs.StringVar(&hostnames, "hostnames", env("HUB_HOSTNAMES", "localhost,127.0.0.1,::1"), "names and addresses in the server certificate, comma-separated (env HUB_HOSTNAMES)")
	fs.StringVar(&logFormat, "log-format", env("HUB_LOG_FORMAT", "text"), "log format: text or json (env HUB_LOG_FORMAT)")
	fs.StringVar(&logLevel, "log-level", env("HUB_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env HUB_LOG_LEVEL)")
	// Telemetry retention: raw samples 30 days, 1-minute rollups 30 days,
	// 1-hour rollups 400 days (the long range). At the recommended 60-s
	// telemetry a 1-minute rollup holds as many buckets as there are raw
	// samples, so keeping it longer than raw buys little; raise it for
	// lockers that report every few seconds.
	cfg.Telemetry.Retention.Raw, cfg.Telemetry.Retention.Rollup1m, cfg.Telemetry.Retention.Rollup1h = 30*24*time.Hour, 30*24*time.Hour, 400*24*time.Hour
	fs.Var(days{&cfg.Telemetry.Retention.Raw}, "telemetry-retention", "how long raw telemetry samples are kept, e.g. 30d or 720h (env HUB_TELEMETRY_RETENTION)")
	fs.Var(days{&cfg.Telemetry.Retention.Rollup1m}, "telemetry-rollup-1m-retention", "how long 1-minute telemetry rollups are kept; at least --telemetry-retention. "+
		"At the recommended 60-s telemetry a 1-minute rollup holds as many buckets as raw, so keeping it longer buys little; raise it for lockers that report every few seconds; "+
		"charts over longer ranges read the 1-hour rollups (env HUB_TELEMETRY_ROLLUP_1M_RETENTION)")
	fs.Var(days{&cfg.Telemetry.Retention.Rollup1h}, "telemetry-rollup-1h-retention", "how long 1-hour telemetry rollups are kept (the long range); at least the 1-minute one (env HUB_TELEMETRY_ROLLUP_1H_RETENTION)")
	fs.StringVar(&cfg.Telemetry.UnknownMetrics, "telemetry-unknown-metrics", env("HUB_TELEMETRY_UNKNOWN_METRICS", "keep"), "metrics outside the known set (docs/protocol.md): keep, or refuse the sample (env HUB_TELEMETRY_UNKNOWN_METRICS)")
	cfg.Commands.ConfirmWithin = 10 * time.Second
	fs.DurationVar(&cfg.Commands.ConfirmWithin, "command-confirm-within", cfg.Commands.ConfirmWithin, "cell.open: how long the door sensor has to report the door open after the locker answered, else the command ends unconfirmed (env HUB_COMMAND_CONFIRM_WITHIN)")
	cfg.Access.CacheTTL = access.DefaultCacheTTL
	fs.DurationVar(&cfg.Access.CacheTTL, "auth-cache-ttl", cfg.Access.CacheTTL, "how long this hub trusts an authenticated token or session without asking PostgreSQL; "+
		"a revocation made on another hub node is seen here within it; negative: no cache (env HUB_AUTH_CACHE_TTL)")
	// The outbox (docs/outbox.md): webhooks, the SMS gateway, SMTP, templates.
	fs.StringVar(&cfg.Outbox.SMS.URL, "sms-url", env("HUB_SMS_URL", ""), "SMS gateway: POST {\"to\",\"text\",\"id\"} to this URL; empty: SMS wait until it is set (env HUB_SMS_URL)")
	fs.StringVar(&cfg.Outbox.SMS.Token, "sms-token", env("HUB_SMS_TOKEN", ""), "bearer token for --sms-url; prefer the env variable, flags show in ps (env HUB_SMS_TOKEN)")
	fs.StringVar(&cfg.Outbox.SMTP.Addr, "smtp-addr", env("HUB_SMTP_ADDR", ""), "mail server host:port for e-mail (STARTTLS when offered); empty: e-mails wait until it is set (env HUB_SMTP_ADDR)")
	fs.StringVar(&cfg.Outbox.SMTP.From, "smtp-from", env("HUB_SMTP_FROM", ""), "sender address of e-mails; required with --smtp-addr (env HUB_SMTP_FROM)")
	fs.StringVar(&cfg.Outbox.SMTP.User, "smtp-user", env("HUB_SMTP_USER", ""), "SMTP AUTH PLAIN user, optional (env HUB_SMTP_USER)")
	fs.StringVar(&cfg.Outbox.SMTP.Password, "smtp-password", env("HUB_SMTP_PASSWORD", ""), "SMTP password; prefer the env variable (env HUB_SMTP_PASSWORD)")
	fs.StringVar(&cfg.Outbox.Fiscal.URL, "fiscal-url", env("HUB_FISCAL_URL", ""), "cloud fiscal service: each receipt of a payment at a locker is POSTed here as JSON with the payment id as Idempotency-Key; empty: receipts wait until it is set (env HUB_FISCAL_URL)")
	fs.StringVar(&cfg.Outbox.Fiscal.Token, "fiscal-token", env("HUB_FISCAL_TOKEN", ""), "bearer token for --fiscal-url; prefer the env variable, flags show in ps (env HUB_FISCAL_TOKEN)")
	cfg.Outbox.Fiscal.Timeout = 10 * time.Second
	fs.DurationVar(&cfg.Outbox.Fiscal.Timeout, "fiscal-timeout", cfg.Outbox.Fiscal.Timeout, "one request to the fiscal service; a timeout is retried with backoff like any failure (env HUB_FISCAL_TIMEOUT)")
	cfg.Parcels.ChargeTimeout = parcels.DefaultChargeTimeout
	fs.DurationVar(&cfg.Parcels.ChargeTimeout, "pos-charge-timeout", cfg.Parcels.ChargeTimeout, "how long a locker's POS terminal has to answer pos.charge before the pickup is refused with payment_pending (asking again charges the same payment once) (env HUB_POS_CHARGE_TIMEOUT)")
	fs.StringVar(&cfg.Outbox.TemplatesDir, "templates", env("HUB_TEMPLATES", ""), "directory of SMS/e-mail template overrides: <name>.sms.txt, <name>.email.txt (first line \"Subject: …\") (env HUB_TEMPLATES)")
	fs.BoolVar(&cfg.Outbox.DenyPrivateWebhooks, "webhook-deny-private", env("HUB_WEBHOOK_DENY_PRIVATE", "") == "true",
		"refuse webhook deliveries to loopback, private and link-local addresses (checked after DNS); set it in production (env HUB_WEBHOOK_DENY_PRIVATE=true)")
	cfg.Outbox.MaxAge, cfg.Outbox.Concurrency = 24*time.Hour, 8
	fs.DurationVar(&cfg.Outbox.MaxAge, "outbox-max-age", cfg.Outbox.MaxAge, "a message not delivered after this long is given up (state failed) (env HUB_OUTBOX_MAX_AGE)")
	fs.IntVar(&cfg.Outbox.Concurrency, "outbox-concurrency", cfg.Outbox.Concurrency, "webhooks, SMS and e-mails sent at once by this hub (env HUB_OUTBOX_CONCURRENCY)")
	cfg.Parcels.DefaultStorage, cfg.Parcels.ReminderBefore = 72*time.Hour, 24*time.Hour
	fs.DurationVar(&cfg.Parcels.DefaultStorage, "parcel-storage", cfg.Parcels.DefaultStorage, "a parcel's storage period when its creator gives none; a parcel may ask for 1 h to 30 days (env HUB_PARCEL_STORAGE)")
	fs.DurationVar(&cfg.Parcels.ReminderBefore, "parcel-reminder-before", cfg.Parcels.ReminderBefore, "the recipient is reminded this long before the storage period ends (env HUB_PARCEL_REMINDER_BEFORE)")
	cfg.Parcels.ReservationTime = 48 * time.Hour
	fs.DurationVar(&cfg.Parcels.ReservationTime, "reservation-time", cfg.Parcels.ReservationTime, "a reservation not dropped off within this expires and frees its cell, unless the API client has a time of its own (hubctl client set NAME --reservation-hours N) (env HUB_RESERVATION_TIME)")
	// Firmware rollouts (docs/ota.md).
	fs.StringVar(&cfg.OTA.DeviceURL, "ota-url", env("HUB_OTA_URL", ""), "base URL of the device listener as lockers reach it, for firmware download URLs, e.g. https://hub.example.com:8443; "+
		"empty: the first non-loopback name of --hostnames with the --device-addr port (env HUB_OTA_URL)")
	cfg.OTA.MaxDownloads, cfg.OTA.Retries = 64, 2
	cfg.OTA.NotifyTimeout, cfg.OTA.DownloadTimeout, cfg.OTA.VerifyTimeout, cfg.OTA.InstallTimeout = 2*time.Minute, 10*time.Minute, 5*time.Minute, 15*time.Minute
	fs.IntVar(&cfg.OTA.MaxDownloads, "ota-max-downloads", cfg.OTA.MaxDownloads, "firmware downloads served at once; more get 503 with Retry-After (protects the uplink) (env HUB_OTA_MAX_DOWNLOADS)")
	cfg.OTA.MaxArtifactBytes = 256 << 20
	fs.Int64Var(&cfg.OTA.MaxArtifactBytes, "ota-max-artifact-bytes", cfg.OTA.MaxArtifactBytes, "largest firmware artifact accepted by upload (env HUB_OTA_MAX_ARTIFACT_BYTES)")
	fs.IntVar(&cfg.OTA.Retries, "ota-retries", cfg.OTA.Retries, "update attempts after the first per locker before it counts as failed; 0: none (env HUB_OTA_RETRIES)")
	fs.DurationVar(&cfg.OTA.NotifyTimeout, "ota-notify-timeout", cfg.OTA.NotifyTimeout, "ota.install sent → the locker's first status (env HUB_OTA_NOTIFY_TIMEOUT)")
	fs.DurationVar(&cfg.OTA.DownloadTimeout, "ota-download-timeout", cfg.OTA.DownloadTimeout, "a download without progress this long fails the attempt (env HUB_OTA_DOWNLOAD_TIMEOUT)")
	fs.DurationVar(&cfg.OTA.VerifyTimeout, "ota-verify-timeout", cfg.OTA.VerifyTimeout, "downloaded → verified → installing, each (env HUB_OTA_VERIFY_TIMEOUT)")
	fs.DurationVar(&cfg.OTA.InstallTimeout, "ota-install-timeout", cfg.OTA.InstallTimeout, "installing → the locker reconnects reporting the new version (env HUB_OTA_INSTALL_TIMEOUT)")
	gcPercent := fs.Int("gc-percent", app.DefaultGCPercent, "Go GC target: heap growth in % of the live heap before a collection (GOGC); "+
		"the hub holds a large live heap of connections, so fewer, larger collections keep latency low; set GOMEMLIMIT to bound memory (env HUB_GC_PERCENT)")
	var videoHostIPs string
	fs.StringVar(&cfg.Video.UDPAddr, "video-udp-addr", env("HUB_VIDEO_UDP_ADDR", ":8189"), "camera video: the one UDP port of WebRTC (ICE, DTLS, SRTP) for lockers and viewers (env HUB_VIDEO_UDP_ADDR)")
	fs.StringVar(&videoHostIPs, "video-host-ips", env("HUB_VIDEO_HOST_IPS", ""), "camera video: the addresses lockers and browsers reach the hub's UDP port at, comma-separated, "+
		"when it is behind 1:1 NAT (they replace the host candidates); empty: the interfaces' own (env HUB_VIDEO_HOST_IPS)")
	fs.IntVar(&cfg.Video.MaxViewersPerLocker, "video-max-viewers", 8, "camera video: viewers of one locker at once; more get 429 (env HUB_VIDEO_MAX_VIEWERS)")
	fs.IntVar(&cfg.Video.MaxStreams, "video-max-streams", 64, "camera video: lockers streaming at once; more get 503 (env HUB_VIDEO_MAX_STREAMS)")
	fs.DurationVar(&cfg.Video.IdleTimeout, "video-idle-timeout", 15*time.Second, "camera video: a locker's stream stops this long after its last viewer left (env HUB_VIDEO_IDLE_TIMEOUT)")
	fs.DurationVar(&cfg.Video.Recordings.Duration, "video-clip", 20*time.Second, "camera video: length of the clip recorded on a door-forced or tamper alarm, from the first keyframe (env HUB_VIDEO_CLIP)")
	fs.IntVar(&cfg.Video.Recordings.MaxActive, "video-max-recordings", 4, "camera video: clips recorded at once; more alarms get no clip (logged, counted) (env HUB_VIDEO_MAX_RECORDINGS)")
	fs.DurationVar(&cfg.Video.Recordings.MaxAge, "video-retention", 30*24*time.Hour, "camera video: clips are deleted after this long (env HUB_VIDEO_RETENTION)")
	videoMaxGiB := fs.Float64("video-retention-gib", 10, "camera video: the oldest clips are deleted while all of them take more than this many GiB (env HUB_VIDEO_RETENTION_GIB)")
	fs.StringVar(&cfg.Cluster.Node, "node", env("HUB_NODE", ""), "run as one of several hub nodes sharing --database-url, under this name (unique per node); "+
		"commands, twins, presence and the registry are shared through PostgreSQL LISTEN/NOTIFY (docs/scaling.md); empty: a single hub (env HUB_NODE)")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	for flagName, key := range map[string]string{"telemetry-retention": "HUB_TELEMETRY_RETENTION", "command-confirm-within": "HUB_COMMAND_CONFIRM_WITHIN",
		"auth-cache-ttl": "HUB_AUTH_CACHE_TTL", "mqtt-accept-rate": "HUB_MQTT_ACCEPT_RATE", "gc-percent": "HUB_GC_PERCENT",
		"outbox-max-age": "HUB_OUTBOX_MAX_AGE", "outbox-concurrency": "HUB_OUTBOX_CONCURRENCY",
		"parcel-storage": "HUB_PARCEL_STORAGE", "parcel-reminder-before": "HUB_PARCEL_REMINDER_BEFORE", "reservation-time": "HUB_RESERVATION_TIME",
		"fiscal-timeout": "HUB_FISCAL_TIMEOUT", "pos-charge-timeout": "HUB_POS_CHARGE_TIMEOUT",
		"telemetry-rollup-1m-retention": "HUB_TELEMETRY_ROLLUP_1M_RETENTION", "telemetry-rollup-1h-retention": "HUB_TELEMETRY_ROLLUP_1H_RETENTION",
		"ota-max-downloads": "HUB_OTA_MAX_DOWNLOADS", "ota-max-artifact-bytes": "HUB_OTA_MAX_ARTIFACT_BYTES", "ota-retries": "HUB_OTA_RETRIES", "ota-notify-timeout": "HUB_OTA_NOTIFY_TIMEOUT",
		"ota-download-timeout": "HUB_OTA_DOWNLOAD_TIMEOUT", "ota-verify-timeout": "HUB_OTA_VERIFY_TIMEOUT", "ota-install-timeout": "HUB_OTA_INSTALL_TIMEOUT",
		"video-max-viewers": "HUB_VIDEO_MAX_VIEWERS", "video-max-streams": "HUB_VIDEO_MAX_STREAMS", "video-idle-timeout": "HUB_VIDEO_IDLE_TIMEOUT",
		"video-clip": "HUB_VIDEO_CLIP", "video-max-recordings": "HUB_VIDEO_MAX_RECORDINGS", "video-retention": "HUB_VIDEO_RETENTION",
		"video-retention-gib": "HUB_VIDEO_RETENTION_GIB"} {
		if v, ok := os.LookupEnv(key); ok {
			if err := fs.Set(flagName, v); err != nil {
				fmt.Fprintf(os.Stderr, "hub: %s: %v\n", key, err)
				return 2
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if showVersion {
		fmt.Println("hub", version)
		return 0
	}
	if cfg.OTA.Retries <= 0 {
		cfg.OTA.Retries = -1 // ota.Config: 0 takes the default, -1 is none
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
	for _, ip := range strings.Split(videoHostIPs, ",") {
		if ip = strings.TrimSpace(ip); ip != "" {
			if net.ParseIP(ip) == nil {
				fmt.Fprintf(os.Stderr, "hub: --video-host-ips: %q is not an IP address\n", ip)
				return 2
			}
			cfg.Video.HostIPs = append(cfg.Video.HostIPs, ip)
		}
	}
	if *videoMaxGiB <= 0 {
		fmt.Fprintln(os.Stderr, "hub: --video-retention-gib must be positive")
		return 2
	}
	cfg.Video.Recordings.MaxBytes = int64(*videoMaxGiB * (1 << 30))
	cfg.Logger = cfg.Logger.With("version", version)
	cfg.Version = version
	if cfg.AcceptRate <= 0 {
		fmt.Fprintln(os.Stderr, "hub: --mqtt-accept-rate must be positive")
		return 2
	}
	if *gcPercent <= 0 {
		fmt.Fprintln(os.Stderr, "hub: --gc-percent must be positive")
		return 2
	}
	debug.SetGCPercent(*gcPercent) // the process's own setting: main owns it

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.New(cfg).Run(ctx); err != nil {
		cfg.Logger.Error("hub failed", "error", err)
		fmt.Fprintln(os.Stderr, "hub:", err)
		return 1
	}
	return 0
}

// days is a duration flag that also takes whole days: "30d".
type days struct{ d *time.Duration }

func (f days) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	if *f.d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", *f.d/(24*time.Hour))
	}
	return f.d.String()
}

func (f days) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.Atoi(n)
		if err != nil || v <= 0 {
			return fmt.Errorf("%q is not a number of days", s)
		}
		*f.d = time.Duration(v) * 24 * time.Hour
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a duration (e.g. 30d or 720h)", s)
	}
	*f.d = v
	return nil
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
