package lockersim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/pki"
)

func certPath(dir, id string) string { return filepath.Join(dir, id+".crt") }
func keyPath(dir, id string) string  { return filepath.Join(dir, id+".key") }

// CAPool reads a PEM file of CA certificates.
func CAPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Enroller gets a certificate for a locker that has none: with the admin API it
// registers the locker (an existing one is fine) and makes a one-time token;
// the locker then exchanges the token and a CSR for its certificate on the
// device listener (HTTPS, trusting the hub CA).
type Enroller struct {
	Admin   *apiclient.Client // admin API (bearer token)
	Device  *apiclient.Client // device listener (HTTPS trusting the hub CA)
	Dir     string            // where ID.crt, ID.key and ca.crt go
	Cells   int
	Segment string
}

// HasCert reports whether dir holds a certificate and key for id.
func HasCert(dir, id string) bool {
	_, err1 := os.Stat(certPath(dir, id))
	_, err2 := os.Stat(keyPath(dir, id))
	return err1 == nil && err2 == nil
}

// Enroll registers id and fetches its certificate, writing ID.key (0600),
// ID.crt and, if missing, ca.crt into e.Dir.
func (e *Enroller) Enroll(ctx context.Context, id string) error {
	if e.Admin == nil || e.Device == nil {
		return fmt.Errorf("locker %s has no certificate in %s and no admin credential to enrol it (--admin, --admin-token)", id, e.Dir)
	}
	if _, err := e.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: id, Cells: e.Cells, Segment: e.Segment}); err != nil && !apiclient.IsCode(err, "exists") {
		return fmt.Errorf("enrol %s: registering: %w", id, err)
	}
	tok, err := e.Admin.CreateEnrollToken(ctx, id, 10*time.Minute)
	if err != nil {
		return fmt.Errorf("enrol %s: enrolment token: %w", id, err)
	}
	csrPEM, keyPEM, err := pki.NewKeyAndCSR(id)
	if err != nil {
		return fmt.Errorf("enrol %s: %w", id, err)
	}
	cert, err := e.Device.Enroll(ctx, tok.Token, csrPEM)
	if err != nil {
		return fmt.Errorf("enrol %s: exchanging the token: %w", id, err)
	}
	if _, err := tls.X509KeyPair([]byte(cert.Certificate), keyPEM); err != nil {
		return fmt.Errorf("enrol %s: the hub's certificate does not match our key: %w", id, err)
	}
	if err := writeFileAtomic(keyPath(e.Dir, id), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(certPath(e.Dir, id), []byte(cert.Certificate), 0o644); err != nil {
		return err
	}
	caPath := filepath.Join(e.Dir, apiclient.CAFile)
	if _, err := os.Stat(caPath); errors.Is(err, fs.ErrNotExist) && cert.CA != "" {
		if err := writeFileAtomic(caPath, []byte(cert.CA), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ClientTLS is the TLS configuration of locker id: its certificate from dir,
// trusting pool, checking the server name serverName.
func ClientTLS(dir, id string, pool *x509.CertPool, serverName string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certPath(dir, id), keyPath(dir, id))
	if err != nil {
		return nil, fmt.Errorf("locker %s: %w", id, err)
	}
	cert.Leaf = nil // a client does not need its own certificate parsed: about 2 KiB per locker
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS12,
		// As a locker's embedded TLS stack does: a classical key exchange (Go's
		// default adds the costlier post-quantum hybrid) and session resumption,
		// so a reconnect after a hub restart costs no certificate signatures.
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256},
		ClientSessionCache: tls.NewLRUClientSessionCache(1),
	}, nil
}
