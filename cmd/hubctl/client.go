package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/lockerhub/lockerhub/apiclient"
)

// endpoint resolves the hub address and the admin token: flags first, then
// HUBCTL_SERVER/HUBCTL_TOKEN, then the local hub's data dir. The local token is
// sent only to the local hub, never to a --server elsewhere.
func (c *cli) endpoint() (server, token string, err error) {
	server, token = c.g.server, c.g.token
	c.serverFrom = "--server"
	if server == "" {
		server = c.getenv(envServer)
		c.serverFrom = envServer
	}
	if token == "" {
		token = c.getenv(envToken)
	}
	if server != "" {
		if server, err = normalizeServer(server); err != nil {
			return "", "", err
		}
	}
	if server != "" && token != "" {
		return server, token, nil
	}
	dir := c.g.dataDir
	if dir == "" {
		dir = c.getenv(envDataDir)
	}
	if dir == "" {
		dir = defaultDataDir
	}
	local, localToken, err := apiclient.ReadLocal(dir)
	switch {
	case server == "":
		// A token was given or not: either way the address must come from
		// hub.json. ReadLocal fills local even when only admin.token is missing.
		if err != nil && (local.HTTP == "" || token == "") {
			return "", "", err
		}
		c.serverFrom = filepath.Join(dir, apiclient.HubInfoFile)
		if server, err = normalizeServer(local.HTTP); err != nil {
			return "", "", fmt.Errorf("%s: %w", c.serverFrom, err)
		}
		if token == "" {
			token = localToken
		}
		return server, token, nil
	default: // a server without a token
		if err == nil && sameServer(local.HTTP, server) {
			return server, localToken, nil
		}
		return "", "", fmt.Errorf("no token for %s: pass --token or set %s", server, envToken)
	}
}

// normalizeServer accepts host:port or a URL and returns a base URL without a
// trailing slash.
func normalizeServer(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("server %q is not an http(s) URL such as http://127.0.0.1:8080", s)
	}
	return strings.TrimRight(s, "/"), nil
}

func sameServer(a, b string) bool {
	na, errA := normalizeServer(a)
	nb, errB := normalizeServer(b)
	return errA == nil && errB == nil && strings.EqualFold(na, nb)
}

// client returns the API client, made on first use.
func (c *cli) client() (*apiclient.Client, error) {
	if c.api != nil {
		return c.api, nil
	}
	server, token, err := c.endpoint()
	if err != nil {
		return nil, err
	}
	c.g.server = server // for error messages
	c.capture = &captureTransport{base: http.DefaultTransport}
	c.api = apiclient.New(server, token)
	c.api.HTTP.Transport = c.capture
	return c.api, nil
}

// captureTransport keeps the body of the last response, so that --json can
// print what the hub sent rather than a re-encoding of the decoded value.
type captureTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	last bytes.Buffer
}

func (t *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.last.Reset()
	t.mu.Unlock()
	resp.Body = &teeBody{ReadCloser: resp.Body, t: t}
	return resp, nil
}

type teeBody struct {
	io.ReadCloser
	t *captureTransport
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.t.mu.Lock()
	b.t.last.Write(p[:n])
	b.t.mu.Unlock()
	return n, err
}

// lastBody returns a copy of the body of the last response.
func (t *captureTransport) lastBody() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.last.Bytes())
}

func isConnRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
