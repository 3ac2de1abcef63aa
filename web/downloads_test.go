package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestClipDownloadGuard: camera clips are found by their recording id only.
// No request path reaches another file: `../`, encoded `..%2f`, `%2e%2e`,
// absolute paths and odd ids are refused (or cleaned by the router into a
// route that serves nothing), and even a recordings row whose file name was
// tampered with in the database (`../ca.key`, an absolute path, a dot file)
// opens nothing outside the recordings directory. As ota.TestDownloadGuard
// does for firmware downloads.
func TestClipDownloadGuard(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	h.AddLocker("CLIP-1")
	insert := func(file string) int64 {
		var id int64
		require.NoError(t, h.App.Pool.QueryRow(ctx, `INSERT INTO video_recordings (locker_id, reason, state, codec, bytes, file, ended_at)
			VALUES ('CLIP-1', 'test', 'done', 'VP8', 4, $1, now()) RETURNING id`, file).Scan(&id))
		return id
	}
	good := insert("")
	_, err := h.App.Pool.Exec(ctx, `UPDATE video_recordings SET file = $2 WHERE id = $1`, good, fmt.Sprintf("%d.webm", good))
	require.NoError(t, err)
	dir := filepath.Join(h.DataDir, "recordings")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.webm", good)), []byte("WEBM"), 0o600))

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (int, string, string) {
		req, err := http.NewRequest("GET", h.HTTPURL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+h.AdminToken)
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header.Get("Location")
	}

	status, body, _ := get(fmt.Sprintf("/api/v1/recordings/%d/file", good))
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, "WEBM", body)

	caKey, err := os.ReadFile(filepath.Join(h.DataDir, "ca.key"))
	require.NoError(t, err)
	secret := strings.Split(string(caKey), "\n")[1] // a line of the key itself
	for _, bad := range []string{
		"../../ca.key", "..%2f..%2fca.key", "%2e%2e%2f%2e%2e%2fca.key", "%2e%2e", "..",
		"%2Fetc%2Fpasswd", "/etc/passwd", "%00", "1%00", "1;rm", "-1", "0", "1e3", "999999",
		fmt.Sprintf("%d/../../../ca.key", good), fmt.Sprintf("%d%%2f..%%2f..%%2fca.key", good),
	} {
		status, body, loc := get("/api/v1/recordings/" + bad + "/file")
		if status == http.StatusTemporaryRedirect || status == http.StatusMovedPermanently {
			// The router cleaned the path ("/api/v1/recordings/../../x" is
			// "/api/x"): what it points at must serve nothing either.
			require.True(t, strings.HasPrefix(loc, "/"), "%s: redirected to %q", bad, loc)
			status, body, _ = get(loc)
		}
		require.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, status, "%s: %s", bad, body)
		require.NotContains(t, body, secret, bad)
		require.NotContains(t, body, "PRIVATE KEY", bad)
		require.NotContains(t, body, "root:", bad)
	}

	// Rows pointing elsewhere: the file name must be a plain name in the
	// recordings directory.
	for _, file := range []string{"../ca.key", "../../ca.key", filepath.Join(h.DataDir, "ca.key"), "/etc/passwd", ".hidden", "sub/1.webm"} {
		id := insert(file)
		status, body, _ := get(fmt.Sprintf("/api/v1/recordings/%d/file", id))
		require.Equal(t, http.StatusNotFound, status, "%s: %s", file, body)
		require.Contains(t, body, `"not_found"`, file)
		require.NotContains(t, body, secret, file)
	}
}
