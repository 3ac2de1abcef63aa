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

func TestTicketKeysPersistAndRotate(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	k1, err := LoadOrRotateTicketKeys(dir, now, 24*time.Hour)
	require.NoError(t, err)
	require.Len(t, k1, 1)
	st, err := os.Stat(filepath.Join(dir, TicketKeysFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	again, err := LoadOrRotateTicketKeys(dir, now.Add(time.Hour), 24*time.Hour)
	require.NoError(t, err)
	require.Equal(t, k1, again, "a restart within a day keeps the key: sessions resume")

	k2, err := LoadOrRotateTicketKeys(dir, now.Add(25*time.Hour), 24*time.Hour)
	require.NoError(t, err)
	require.Len(t, k2, 2)
	require.NotEqual(t, k1[0], k2[0], "a new key encrypts new tickets")
	require.Equal(t, k1[0], k2[1], "the old key still decrypts")

	k3, err := LoadOrRotateTicketKeys(dir, now.Add(50*time.Hour), 24*time.Hour)
	require.NoError(t, err)
	require.Len(t, k3, 2, "at most two keys")
	require.Equal(t, k2[0], k3[1])
}
