package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRootsWithoutASystemBundle: in the FROM scratch image there is no
// /etc/ssl, yet webhooks, the SMS gateway and SMTP STARTTLS must verify the
// receivers' certificates. The hub links Mozilla's roots as a fallback; this
// runs the test binary again with every system location pointed nowhere.
func TestRootsWithoutASystemBundle(t *testing.T) {
	if os.Getenv("LOCKERHUB_ROOTS_CHILD") == "1" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Printf("roots: %d\n", len(pool.Subjects()))
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRootsWithoutASystemBundle$")
	cmd.Env = append(os.Environ(), "LOCKERHUB_ROOTS_CHILD=1",
		"SSL_CERT_FILE=/nonexistent/ca.crt", "SSL_CERT_DIR=/nonexistent")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	var n int
	_, err = fmt.Sscanf(string(out), "roots: %d", &n)
	require.NoError(t, err, "%s", out)
	require.Greater(t, n, 100, "the fallback roots (Mozilla's, over 100) are linked in")
}
