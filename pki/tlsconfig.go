package pki

import "crypto/tls"

// CipherSuites are the TLS 1.2 suites the hub's listeners accept: ECDHE key
// exchange (forward secrecy) with AEAD ciphers only. No CBC, no RSA key
// exchange, no SHA-1 MACs: every TLS stack a locker or browser of the last
// decade has offers these. TLS 1.3 suites are not configurable in Go and are
// all AEAD.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	// For an --http-tls-cert with an RSA key.
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Harden sets what every server listener of the hub shares: TLS 1.2 at
// least, and CipherSuites for TLS 1.2.
func Harden(c *tls.Config) *tls.Config {
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	c.CipherSuites = CipherSuites
	return c
}
