package web_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestDashboardAssets: the page and its files are served without a session
// (the page logs in), revalidated by ETag, and nothing else is.
func TestDashboardAssets(t *testing.T) {
	h := hubtest.Start(t)
	for path, ct := range map[string]string{
		"/":                   "text/html; charset=utf-8",
		"/assets/app.js":      "text/javascript; charset=utf-8",
		"/assets/app.css":     "text/css; charset=utf-8",
		"/assets/favicon.svg": "image/svg+xml",
	} {
		resp, err := http.Get(h.HTTPURL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, path)
		require.Equal(t, ct, resp.Header.Get("Content-Type"), path)
		require.NotEmpty(t, body, path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		etag := resp.Header.Get("ETag")
		require.NotEmpty(t, etag)

		req, _ := http.NewRequest("GET", h.HTTPURL+path, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotModified, resp.StatusCode, path)
	}
	for _, path := range []string{"/assets/nope.js", "/assets/../web.go", "/index.html", "/assets/index.html/x"} {
		resp, err := http.Get(h.HTTPURL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 404, resp.StatusCode, path)
	}
}
