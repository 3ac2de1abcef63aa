package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/protocol"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version string

// commands is every hubctl command, in the order help lists them.
var commands = []command{
	{
		name: "locker add", args: "ID (--cells N | --model M) [--address A] [--time-zone TZ] [--lat X --lon Y] [--segments S,…] [--carriers C,…]", nargs: 1,
		summary: "register a locker",
		doc: "Registers a locker. With --model, its cells are the model's layout; without, --cells N gives\n" +
			"N cells in columns of 10 (A01–A10, B01–B10, …) of size M.",
		setup: func(fs *flag.FlagSet) runFunc {
			f := registerLockerFlags(fs)
			segment := fs.String("segment", "", "one network `segment` (a shorthand for --segments S)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.lockerAdd(ctx, args[0], *segment, f)
			}
		},
	},
	{
		name: "locker list", args: "[--segment S] [--model M] [--carrier C] [--status online|offline] [--q TEXT]", nargs: 0,
		summary: "list the registered lockers, filtered",
		doc: "Lists lockers in ID order, 100 at a time unless --limit says otherwise; --offset pages on.\n" +
			"--q finds lockers whose ID or address holds TEXT, in any case.",
		setup: func(fs *flag.FlagSet) runFunc {
			var f apiclient.LockerFilter
			fs.StringVar(&f.Segment, "segment", "", "only lockers in `segment`")
			fs.StringVar(&f.Model, "model", "", "only lockers of `model`")
			fs.StringVar(&f.Carrier, "carrier", "", "only lockers `carrier` may use")
			fs.StringVar(&f.Status, "status", "", "only `online` or offline lockers")
			fs.StringVar(&f.Query, "q", "", "only lockers whose ID or address contains `text`")
			fs.IntVar(&f.Limit, "limit", 0, "at most `N` lockers (hub default 100, at most 10000)")
			fs.IntVar(&f.Offset, "offset", 0, "skip the first `N` lockers")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.lockerList(ctx, f)
			}
		},
	},
	{
		name: "locker show", args: "ID", nargs: 1,
		summary: "show one locker",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.lockerShow(ctx, args[0])
			}
		},
	},
	{
		name: "locker update", args: "ID [--model M] [--cells N] [--address A] [--time-zone TZ] [--lat X --lon Y] [--segments S,…] [--carriers C,…] [--enable|--disable]", nargs: 1,
		summary: "change a locker",
		doc: "Changes what the flags say and nothing else. An empty value clears a field: --model \"\"\n" +
			"(the cells stay), --time-zone \"\", --lat \"\" --lon \"\", --segments \"\". --disable revokes every\n" +
			"certificate of the locker and closes its connection; --enable lets it have new ones.",
		setup: func(fs *flag.FlagSet) runFunc {
			f := registerLockerFlags(fs)
			enable := fs.Bool("enable", false, "enable the locker")
			disable := fs.Bool("disable", false, "disable the locker: revoke its certificates, close its connection")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.lockerUpdate(ctx, args[0], f, *enable, *disable)
			}
		},
	},
	{
		name: "locker delete", args: "ID", nargs: 1,
		summary: "delete a locker, revoking its certificates",
		doc:     "Deletes the locker and its cells, revokes every certificate of it and closes its connection.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.lockerDelete(ctx, args[0])
			}
		},
	},
	{
		name: "locker import", args: "FILE.csv", nargs: 1,
		summary: "register the lockers of a CSV file, all or none",
		doc: "Registers every locker of the CSV file (- for standard input) in one go: when a line is wrong,\n" +
			"none is registered and the error names the line and column. The first line names the columns:\n" +
			"  id,model,cells,address,time_zone,lat,lon,segments,carriers\n" +
			"Only id is required; segments and carriers are separated by '|'. At most 20,000 lockers, 10 MiB.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.lockerImport(ctx, args[0])
			}
		},
	},
	{
		name: "model add", args: "ID --manufacturer M --name N --layout A:SSMMLL,B:MMMM [--capabilities screen,keypad]", nargs: 1,
		summary: "add a locker model",
		doc: "Adds a locker model. --layout lists each column as LETTERS:SIZES, the sizes of its cells\n" +
			"from row 01 down (S, M, L, XL): \"A:SSMMLL,B:MMMM\" is A01–A06 and B01–B04.\n" +
			"Capabilities: camera, keypad, pos, scanner, screen.",
		setup: func(fs *flag.FlagSet) runFunc {
			manufacturer := fs.String("manufacturer", "", "who makes it (`name`)")
			name := fs.String("name", "", "the model's `name`")
			layout := fs.String("layout", "", "cell `layout`, e.g. A:SSMMLL,B:MMMM")
			caps := fs.String("capabilities", "", "hardware, comma-separated: `list` of camera, keypad, pos, scanner, screen")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.modelAdd(ctx, args[0], *manufacturer, *name, *layout, *caps)
			}
		},
	},
	{
		name: "model list", nargs: 0,
		summary: "list the locker models",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.modelList(ctx) }
		},
	},
	{
		name: "model show", args: "ID", nargs: 1,
		summary: "show one locker model and its layout",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.modelShow(ctx, args[0]) }
		},
	},
	{
		name: "model delete", args: "ID", nargs: 1,
		summary: "delete a locker model no locker uses",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.modelDelete(ctx, args[0]) }
		},
	},
	{
		name: "cert issue", args: "ID [--out DIR] [--force]", nargs: 1,
		summary: "issue a certificate for a locker, its key made here",
		doc: "Makes an ECDSA P-256 key and a CSR on this machine, has the hub sign the CSR and writes\n" +
			"DIR/ID.crt, DIR/ID.key (mode 0600) and DIR/ca.crt. The hub never sees the private key.",
		setup: func(fs *flag.FlagSet) runFunc {
			out := fs.String("out", ".", "`dir`ectory to write ID.crt, ID.key and ca.crt to (created if missing)")
			force := fs.Bool("force", false, "replace an existing ID.key and ID.crt in the directory")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.certIssue(ctx, args[0], *out, *force)
			}
		},
	},
	{
		name: "cert revoke", args: "ID", nargs: 1,
		summary: "revoke every certificate of a locker",
		doc:     "Revokes every certificate of the locker and closes its connection; prints how many were revoked.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				if err := checkID(args[0]); err != nil {
					return err
				}
				api, err := c.client()
				if err != nil {
					return err
				}
				n, err := api.RevokeCertificates(ctx, args[0])
				if err != nil {
					return fmt.Errorf("cert revoke %s: %w", args[0], err)
				}
				if c.g.json {
					return c.printRaw()
				}
				fmt.Fprintln(c.stdout, revokedMessage(args[0], n))
				return nil
			}
		},
	},
	{
		name: "enroll-token", args: "ID [--ttl 24h] [--out DIR]", nargs: 1,
		summary: "make a one-time enrolment token for a locker",
		doc: "Prints a one-time token the locker exchanges for its certificate at enrolment, and its expiry.\n" +
			"With --out DIR, also writes the hub's CA certificate to DIR/ca.crt, so both can be shipped together.",
		setup: func(fs *flag.FlagSet) runFunc {
			ttl := fs.Duration("ttl", 24*time.Hour, "how long the token stays valid")
			out := fs.String("out", "", "also write the hub's CA certificate to `dir`/ca.crt")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.enrollToken(ctx, args[0], *ttl, *out)
			}
		},
	},
	{
		name: "api", args: "METHOD PATH [--data JSON|@file|@-]", nargs: 2,
		summary: "call any API endpoint and print the response body",
		doc: "Calls METHOD PATH with the admin credential and prints the response body (JSON indented).\n" +
			"A PATH without a leading / is taken under /api/v1/ (`hubctl api GET lockers`).\n" +
			"An HTTP error exits with status 1 and prints the response body on stderr.",
		setup: func(fs *flag.FlagSet) runFunc {
			data := fs.String("data", "", "request body: JSON, @file to read it from a file, or @- for stdin")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.apiCall(ctx, args[0], args[1], *data)
			}
		},
	},
	{
		name: "version", nargs: 0,
		summary: "print hubctl's version",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				v := buildVersion()
				if c.g.json {
					return json.NewEncoder(c.stdout).Encode(map[string]string{"version": v, "go": runtime.Version()})
				}
				fmt.Fprintf(c.stdout, "hubctl %s (%s)\n", v, runtime.Version())
				return nil
			}
		},
	},
}

// checkID refuses a malformed locker ID before anything is sent or written
// (cert issue builds file names from it).
func checkID(id string) error {
	if err := protocol.ValidateLockerID(id); err != nil {
		return &usageError{err.Error()}
	}
	return nil
}

// printRaw prints the body of the last API response, indented.
func (c *cli) printRaw() error {
	return writeBody(c.stdout, c.capture.lastBody())
}

// writeBody writes an API response body: JSON indented, anything else as is.
func writeBody(w io.Writer, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if json.Indent(&buf, bytes.TrimSpace(body), "", "  ") == nil {
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	}
	_, err := w.Write(body)
	return err
}

func (c *cli) certIssue(ctx context.Context, id, dir string, force bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	crtPath, keyPath, caPath := filepath.Join(dir, id+".crt"), filepath.Join(dir, id+".key"), filepath.Join(dir, apiclient.CAFile)
	if !force {
		for _, p := range []string{keyPath, crtPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("cert issue %s: %s already exists: pass --force to replace it", id, p)
			}
		}
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cert issue %s: %w", id, err)
	}
	csrPEM, keyPEM, err := pki.NewKeyAndCSR(id)
	if err != nil {
		return fmt.Errorf("cert issue %s: making the key: %w", id, err)
	}
	cert, err := api.IssueCertificate(ctx, id, csrPEM)
	if err != nil {
		return fmt.Errorf("cert issue %s: %w", id, err)
	}
	if _, err := tls.X509KeyPair([]byte(cert.Certificate), keyPEM); err != nil {
		return fmt.Errorf("cert issue %s: the hub's certificate does not match the key made here: %w", id, err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{keyPath, keyPEM, 0o600},
		{crtPath, []byte(cert.Certificate), 0o644},
		{caPath, []byte(cert.CA), 0o644},
	} {
		if err := pki.WriteFile(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("cert issue %s: the hub issued certificate %s but writing it failed: %w", id, cert.Serial, err)
		}
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Certificate issued for %s.\n", id)
	tw := newTable(c.stdout)
	fmt.Fprintf(tw, "Serial\t%s\n", cert.Serial)
	fmt.Fprintf(tw, "Valid until\t%s\n", fmtTime(cert.NotAfter, c.loc))
	fmt.Fprintf(tw, "Certificate\t%s\n", crtPath)
	fmt.Fprintf(tw, "Private key\t%s (mode 0600, made here; the hub never saw it)\n", keyPath)
	fmt.Fprintf(tw, "CA\t%s\n", caPath)
	return tw.Flush()
}

func (c *cli) enrollToken(ctx context.Context, id string, ttl time.Duration, dir string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if ttl < time.Second {
		return usagef("enroll-token: --ttl must be at least 1s, got %v", ttl)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	tok, err := api.CreateEnrollToken(ctx, id, ttl)
	if err != nil {
		return fmt.Errorf("enroll-token %s: %w", id, err)
	}
	raw := c.capture.lastBody()
	caPath := ""
	if dir != "" {
		ca, err := api.CA(ctx)
		if err != nil {
			return fmt.Errorf("enroll-token %s: token made, but fetching the CA certificate failed: %w", id, err)
		}
		if _, err := pki.ParseCertPEM(ca); err != nil {
			return fmt.Errorf("enroll-token %s: token made, but the hub's CA certificate is not PEM: %w", id, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("enroll-token %s: %w", id, err)
		}
		caPath = filepath.Join(dir, apiclient.CAFile)
		if err := pki.WriteFile(caPath, ca, 0o644); err != nil {
			return fmt.Errorf("enroll-token %s: %w", id, err)
		}
	}
	if c.g.json {
		return writeBody(c.stdout, raw)
	}
	return writeEnrollToken(c.stdout, tok, caPath, c.now(), c.loc)
}

func (c *cli) apiCall(ctx context.Context, method, path, data string) error {
	method = strings.ToUpper(method)
	if method == "" || strings.Trim(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return usagef("api: %q is not an HTTP method", method)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/api/v1/" + path
	}
	body, err := c.readData(data)
	if err != nil {
		return err
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	resp, _, err := api.Do(ctx, method, path, body)
	var apiErr *apiclient.Error
	if errors.As(err, &apiErr) {
		detail := oneLine(string(resp))
		var buf bytes.Buffer
		if json.Compact(&buf, resp) == nil {
			detail = buf.String()
		}
		if detail == "" {
			detail = apiErr.Message
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, apiErr.Status, detail)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return writeBody(c.stdout, resp)
}

// readData returns the request body of `api --data`: the JSON itself, @file or
// @- for stdin. Nil means no body.
func (c *cli) readData(data string) ([]byte, error) {
	if data == "" {
		return nil, nil
	}
	body := []byte(data)
	if name, ok := strings.CutPrefix(data, "@"); ok {
		var err error
		if name == "-" {
			body, err = io.ReadAll(c.stdin)
		} else {
			body, err = os.ReadFile(name)
		}
		if err != nil {
			return nil, fmt.Errorf("api --data: %w", err)
		}
	}
	if !json.Valid(body) {
		return nil, usagef("api --data: the body is not valid JSON")
	}
	return body, nil
}

// buildVersion is the stamped version, else what the Go toolchain recorded.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
