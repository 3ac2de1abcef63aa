// Package deploy holds what runs the hub on a server: the systemd unit, the
// container image and the example settings. Its tests keep them in step
// with the hub.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// unitKey returns the values of key in the unit file text, in order.
func unitKey(unit, key string) []string {
	var out []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the unit with its
// binary path pointed at a stand-in (verify insists that ExecStart exists).
// verify exits 0 on unknown keys and bad values and only prints them, so any
// output fails the test. Without systemd-analyze the test skips, except under
// CI=true, where a missing tool fails (.ci/run installs systemd).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing under CI=true (apt-get install systemd)")
		}
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	unit, err := os.ReadFile("lockerhub.service")
	require.NoError(t, err)
	dir := t.TempDir()
	bin := filepath.Join(dir, "hub")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/hub ", bin+" ")
	require.NotEqual(t, string(unit), text, "ExecStart runs /usr/local/bin/hub")
	path := filepath.Join(dir, "lockerhub.service")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))

	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify complains")

	// What docs/operations.md and DESIGN decision 31 promise of the unit.
	for key, want := range map[string]string{
		"User": "lockerhub", "Group": "lockerhub", "StateDirectory": "lockerhub", "StateDirectoryMode": "0700",
		"EnvironmentFile": "/etc/lockerhub/hub.env", "Restart": "on-failure", "LimitNOFILE": "65536",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "TimeoutStopSec": "20s",
	} {
		require.Equal(t, []string{want}, unitKey(text, key), key)
	}
}

// TestUnitRunsTheHubWithFlagsItKnows: every --flag of ExecStart is a flag of
// cmd/hub, and the data dir is the StateDirectory.
func TestUnitRunsTheHubWithFlagsItKnows(t *testing.T) {
	unit, err := os.ReadFile("lockerhub.service")
	require.NoError(t, err)
	main, err := os.ReadFile("../cmd/hub/main.go")
	require.NoError(t, err)
	execStart := unitKey(string(unit), "ExecStart")
	require.Len(t, execStart, 1)
	args := strings.Fields(execStart[0])
	require.Equal(t, "/usr/local/bin/hub", args[0])
	for _, a := range args[1:] {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			require.Contains(t, string(main), `"`+name+`"`, "ExecStart passes --%s, which cmd/hub does not define", name)
		}
	}
	require.Contains(t, execStart[0], "--data-dir /var/lib/lockerhub")
}

// TestExampleSettingsAreHubSettings: every HUB_* variable in the example
// environment file is one the hub reads.
func TestExampleSettingsAreHubSettings(t *testing.T) {
	env, err := os.ReadFile("hub.env.example")
	require.NoError(t, err)
	main, err := os.ReadFile("../cmd/hub/main.go")
	require.NoError(t, err)
	names := regexp.MustCompile(`(?m)^#? ?(HUB_[A-Z0-9_]+)=`).FindAllStringSubmatch(string(env), -1)
	require.NotEmpty(t, names)
	for _, m := range names {
		require.Contains(t, string(main), `"`+m[1]+`"`, "hub.env.example sets %s, which cmd/hub does not read", m[1])
	}
}

// TestDockerfileCopiesWhatMakeDistBuilds: the image is made of `make dist`
// output; a binary renamed or dropped there must not leave the Dockerfile
// pointing at nothing.
func TestDockerfileCopiesWhatMakeDistBuilds(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	mk, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	cmds := regexp.MustCompile(`(?m)^CMDS\s*:=\s*(.+)$`).FindSubmatch(mk)
	require.NotNil(t, cmds, "Makefile defines CMDS")
	built := strings.Fields(string(cmds[1]))
	require.Contains(t, string(df), "\nFROM scratch\n")
	for _, line := range strings.Split(string(df), "\n") {
		if !strings.HasPrefix(line, "COPY ") {
			continue
		}
		fields := strings.Fields(line)
		var srcs []string
		for _, f := range fields[1 : len(fields)-1] {
			if !strings.HasPrefix(f, "--") {
				srcs = append(srcs, f)
			}
		}
		for _, src := range srcs {
			if bin, ok := strings.CutPrefix(src, "dist/"); ok {
				require.Contains(t, built, bin, "the Dockerfile copies %s, which make dist does not build", src)
				continue
			}
			_, err := os.Stat(filepath.Join("..", src))
			require.NoError(t, err, "the Dockerfile copies %s", src)
		}
	}
}
