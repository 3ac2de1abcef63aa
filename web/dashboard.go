package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// The dashboard is plain HTML, CSS and JavaScript (ES modules) in
// web/dashboard, embedded as is: no build step. index.html is served at /,
// everything else under /assets/. The page is a single-page app with hash
// routes (#/login, #/, #/lockers/ID) on top of the API and the stream.
//
//go:embed dashboard
var dashboardFS embed.FS

// asset is one embedded file, with what it takes to serve it well.
type asset struct {
	body        []byte
	etag        string
	contentType string
}

var assets = func() map[string]asset {
	m := map[string]asset{}
	err := fs.WalkDir(dashboardFS, "dashboard", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := dashboardFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		m[strings.TrimPrefix(p, "dashboard/")] = asset{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, contentType: ct}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return m
}()

// contentSecurityPolicy allows only the hub's own scripts, styles and
// connections (the stream's WebSocket included): no inline script, no
// third-party origin, no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (a *API) dashboardIndex(w http.ResponseWriter, r *http.Request) { serveAsset(w, r, "index.html") }

func (a *API) dashboardAsset(w http.ResponseWriter, r *http.Request) {
	serveAsset(w, r, r.PathValue("file"))
}

func serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	f, ok := assets[name]
	if !ok || name == "index.html" && r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	// Revalidate every time: the files change with every hub upgrade and a
	// 304 costs little.
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if name == "index.html" {
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(f.body)
}
