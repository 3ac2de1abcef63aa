package app_test

import (
	"bytes"
	"context"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

// TestDataDirModesAfterFirstStart: after a first start (and a firmware
// upload, which adds ota/) the data dir and every directory in it are 0700,
// keys, credentials and stored files 0600; only the public certificates,
// the public OTA key and hub.json may be read by others. The process umask
// is 0 meanwhile, so no mode comes from a friendly umask. A file the table
// does not know fails the test: decide its mode, then add it.
func TestDataDirModesAfterFirstStart(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })

	dir := filepath.Join(t.TempDir(), "var", "lib", "lockerhub") // made by the hub
	cfg := app.Config{DataDir: dir, DatabaseURL: pgtest.NewDB(t, app.Migrations()...),
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DeviceAddr: "127.0.0.1:0", Out: &bytes.Buffer{}}
	cfg.Video.UDPAddr = "127.0.0.1:0"
	a := app.New(cfg)
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(a.Shutdown)
	_, err := apiclient.New("http://"+a.HTTPAddr(), a.AdminToken).
		UploadArtifact(context.Background(), "9.9.9", nil, "", bytes.NewReader([]byte("firmware image")))
	require.NoError(t, err)

	public := map[string]bool{"ca.crt": true, "server.crt": true, "ota-signing.pub": true, "hub.json": true}
	secret := map[string]bool{"ca.key": true, "server.key": true, "ota-signing.key": true, "tls-ticket.keys": true,
		"admin.token": true, "admin.password": true}
	dirs := map[string]bool{".": true, "ota": true, "recordings": true}
	seen, artifacts := map[string]bool{}, 0
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, err := filepath.Rel(dir, path)
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		mode := info.Mode().Perm()
		switch {
		case d.IsDir():
			require.True(t, dirs[rel], "a directory %s the test does not know: decide its mode and add it", rel)
			require.Equal(t, fs.FileMode(0o700), mode, "directory %s", rel)
		case filepath.Dir(rel) == "ota":
			require.Equal(t, fs.FileMode(0o600), mode, "stored artifact %s", rel)
			artifacts++
		case public[rel]:
			require.Equal(t, fs.FileMode(0o644), mode, rel)
		case secret[rel]:
			require.Equal(t, fs.FileMode(0o600), mode, rel)
		default:
			t.Errorf("a file %s (mode %v) the test does not know: decide its mode and add it", rel, mode)
		}
		seen[rel] = true
		return nil
	}))
	for name := range secret {
		require.True(t, seen[name], "%s was made at the first start", name)
	}
	require.Equal(t, 1, artifacts, "the uploaded artifact is under ota/")
}
