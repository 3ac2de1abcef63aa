package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCAPersistsAndSignsDevices(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	require.NoError(t, err)
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "CA key must be private")

	again, err := LoadOrCreateCA(dir)
	require.NoError(t, err)
	require.Equal(t, ca.Cert.Raw, again.Cert.Raw, "a second start must reuse the CA")

	csr, _, err := NewKeyAndCSR("someone-else")
	require.NoError(t, err)
	cert, _, err := ca.SignDevice(csr, "L1", time.Hour)
	require.NoError(t, err)
	require.Equal(t, "L1", cert.Subject.CommonName, "CN is the locker ID, not what the CSR asked for")
	_, err = cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	_, _, err = ca.SignDevice([]byte("garbage"), "L1", time.Hour)
	require.ErrorContains(t, err, "csr")
}

func TestServerCertReissuedWhenNamesChange(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	require.NoError(t, err)
	c1, err := ca.LoadOrCreateServerCert(dir, []string{"localhost", "127.0.0.1"})
	require.NoError(t, err)
	c2, err := ca.LoadOrCreateServerCert(dir, []string{"localhost", "127.0.0.1"})
	require.NoError(t, err)
	require.Equal(t, c1.Certificate[0], c2.Certificate[0])
	c3, err := ca.LoadOrCreateServerCert(dir, []string{"hub.example", "127.0.0.1"})
	require.NoError(t, err)
	require.NotEqual(t, c1.Certificate[0], c3.Certificate[0])
	leaf, err := x509.ParseCertificate(c3.Certificate[0])
	require.NoError(t, err)
	require.NoError(t, leaf.VerifyHostname("hub.example"))
}
