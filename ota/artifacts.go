package ota

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/protocol"
)

// Files in the data dir.
const (
	SigningKeyFile = "ota-signing.key" // Ed25519 private key, PKCS #8 PEM, 0600
	SigningPubFile = "ota-signing.pub" // its public key, PKIX PEM
	ArtifactDir    = "ota"
)

// LoadOrCreateSigningKey reads the hub's artifact signing key from dir, or
// makes one on first start.
func LoadOrCreateSigningKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, SigningKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		b, _ := pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an Ed25519 key", path)
		}
		return ek, writePub(dir, ek)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ek)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("store OTA signing key: %w", err)
	}
	return ek, writePub(dir, ek)
}

// PublicKeyPEM is the PKIX PEM of the signing key's public half.
func PublicKeyPEM(k ed25519.PrivateKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKeyPEM reads what PublicKeyPEM wrote.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	pk, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an Ed25519 public key")
	}
	return pk, nil
}

// Verify checks an artifact's signature as a locker does.
func Verify(pub ed25519.PublicKey, version, sha256Hex string, size int64, signatureB64 string) bool {
	sig, err := base64.StdEncoding.DecodeString(signatureB64)
	return err == nil && ed25519.Verify(pub, protocol.OTASignedMessage(version, sha256Hex, size), sig)
}

// writePub writes the public key file unless it already holds this key, so a
// start needs no disk space when nothing changed.
func writePub(dir string, k ed25519.PrivateKey) error {
	path, want := filepath.Join(dir, SigningPubFile), PublicKeyPEM(k)
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return nil
	}
	return pki.WriteFile(path, want, 0o644)
}

// fileWriter remembers a write error, so an upload tells a full disk (the
// hub's fault) from a broken request body (the client's).
type fileWriter struct {
	f   *os.File
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// Artifact is an uploaded firmware package.
type Artifact struct {
	ID        int64     `json:"id"`
	Version   string    `json:"version"`
	Models    []string  `json:"models"` // compatible models; empty: all
	Notes     string    `json:"notes"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	Signature string    `json:"signature"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	file      string
}

// NewArtifact describes an upload.
type NewArtifact struct {
	Version string
	Models  []string
	Notes   string
}

const artifactCols = `id, version, models, notes, size, sha256, signature, created_by, created_at, file`

func scanArtifact(row pgx.Row) (Artifact, error) {
	var a Artifact
	err := row.Scan(&a.ID, &a.Version, &a.Models, &a.Notes, &a.Size, &a.SHA256, &a.Signature, &a.CreatedBy, &a.CreatedAt, &a.file)
	a.CreatedAt = a.CreatedAt.UTC()
	return a, err
}

// Upload stores a firmware package from r: into a file under the data dir
// while hashing it, then signs it and records it (and the audit record) in
// one transaction. At most Config.MaxArtifactBytes.
func (u *Updater) Upload(ctx context.Context, n NewArtifact, r io.Reader) (Artifact, error) {
	n.Version = strings.TrimSpace(n.Version)
	if !protocol.ValidVersion(n.Version) {
		return Artifact{}, invalid("version must be 1 to %d printable ASCII characters without spaces", protocol.MaxVersionLen)
	}
	if len(n.Notes) > 10000 {
		return Artifact{}, invalid("release notes are longer than 10000 bytes")
	}
	var models []string
	for _, m := range n.Models {
		for _, m := range strings.Split(m, ",") {
			if m = strings.TrimSpace(m); m != "" && !slices.Contains(models, m) {
				models = append(models, m)
			}
		}
	}
	if models == nil {
		models = []string{}
	}
	dir := filepath.Join(u.cfg.DataDir, ArtifactDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Artifact{}, err
	}
	f, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		return Artifact{}, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	h := sha256.New()
	fw := &fileWriter{f: f}
	size, err := io.Copy(io.MultiWriter(fw, h), io.LimitReader(r, u.cfg.MaxArtifactBytes+1))
	if err == nil {
		err = f.Sync()
		fw.err = err
	}
	if cerr := f.Close(); err == nil {
		err, fw.err = cerr, cerr
	}
	if fw.err != nil {
		u.log.Error("artifact upload: storing the file failed", "version", n.Version, "error", fw.err)
		return Artifact{}, fmt.Errorf("store artifact %s: %w", filepath.Base(tmp), fw.err)
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("%w: reading the upload: %v", ErrInvalid, err)
	}
	if size > u.cfg.MaxArtifactBytes {
		return Artifact{}, fmt.Errorf("%w: the artifact is larger than %d bytes (--ota-max-artifact-bytes)", ErrTooLarge, u.cfg.MaxArtifactBytes)
	}
	if size == 0 {
		return Artifact{}, invalid("artifact is empty")
	}
	sum := hex.EncodeToString(h.Sum(nil))
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(u.key, protocol.OTASignedMessage(n.Version, sum, size)))
	actor := audit.ActorFrom(ctx)
	var a Artifact
	err = pg.Tx(ctx, u.pool, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT nextval('ota_artifacts_id_seq')`).Scan(&id); err != nil {
			return err
		}
		name := fmt.Sprintf("%d-%s.bin", id, sum[:16])
		a, err = scanArtifact(tx.QueryRow(ctx, `INSERT INTO ota_artifacts (id, version, models, notes, size, sha256, signature, file, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+artifactCols,
			id, n.Version, models, n.Notes, size, sum, sig, name, actor.Name))
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionCreate, ObjectType: EntityArtifact, ObjectID: fmt.Sprint(a.ID), After: a})
	})
	if err != nil {
		if pg.IsUniqueViolation(err) {
			return Artifact{}, fmt.Errorf("%w: an artifact of version %s exists", ErrConflict, n.Version)
		}
		return Artifact{}, fmt.Errorf("store artifact: %w", err)
	}
	u.log.Info("artifact uploaded", "id", a.ID, "version", a.Version, "size", a.Size, "sha256", a.SHA256)
	return a, nil
}

// Artifacts lists the artifacts, newest first.
func (u *Updater) Artifacts(ctx context.Context) ([]Artifact, error) {
	rows, err := u.pool.Query(ctx, `SELECT `+artifactCols+` FROM ota_artifacts ORDER BY id DESC`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Artifact, error) { return scanArtifact(r) })
	if out == nil {
		out = []Artifact{}
	}
	return out, err
}

// Artifact returns one artifact.
func (u *Updater) Artifact(ctx context.Context, id int64) (Artifact, error) {
	a, err := scanArtifact(u.pool.QueryRow(ctx, `SELECT `+artifactCols+` FROM ota_artifacts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("%w: artifact %d", ErrNotFound, id)
	}
	return a, err
}

func (u *Updater) artifactByVersion(ctx context.Context, version string) (Artifact, error) {
	a, err := scanArtifact(u.pool.QueryRow(ctx, `SELECT `+artifactCols+` FROM ota_artifacts WHERE version = $1`, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("%w: no artifact of version %s", ErrNotFound, version)
	}
	return a, err
}

// Download is an artifact file a locker may fetch.
type Download struct {
	Artifact Artifact
	File     *os.File
}

// OpenDownload opens artifact id for lockerID, which must be updating to it
// in a running (or paused) rollout: notified up to verified. ErrNotFound
// for an unknown artifact, ErrConflict for a locker that may not have it.
func (u *Updater) OpenDownload(ctx context.Context, lockerID string, id int64) (Download, error) {
	a, err := u.Artifact(ctx, id)
	if err != nil {
		return Download{}, err
	}
	var ok bool
	err = u.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ota_lockers l JOIN ota_rollouts r ON r.id = l.rollout_id
		WHERE l.locker_id = $1 AND r.artifact_id = $2 AND r.state IN ('running', 'paused')
		  AND l.state IN ('notified', 'downloading', 'downloaded', 'verified'))`, lockerID, id).Scan(&ok)
	if err != nil {
		return Download{}, err
	}
	if !ok {
		u.m.downloadsRefused.WithLabelValues("not_in_rollout").Inc()
		return Download{}, fmt.Errorf("%w: locker %s is not updating to artifact %d", ErrConflict, lockerID, id)
	}
	f, err := os.Open(filepath.Join(u.cfg.DataDir, ArtifactDir, a.file))
	if err != nil {
		return Download{}, fmt.Errorf("artifact %d: %w", id, err)
	}
	return Download{Artifact: a, File: f}, nil
}

// AcquireDownload takes one of the MaxDownloads slots; false when all are
// taken (answer 503 with RetryAfter). Call the release func when done.
func (u *Updater) AcquireDownload() (release func(), ok bool) {
	select {
	case u.downloads <- struct{}{}:
		u.m.downloadsActive.Inc()
		return func() { <-u.downloads; u.m.downloadsActive.Dec() }, true
	default:
		u.m.downloadsRefused.WithLabelValues("busy").Inc()
		return nil, false
	}
}

// RetryAfter is how long a locker refused a download slot should wait.
func (u *Updater) RetryAfter() time.Duration { return u.cfg.RetryAfter }

// Served counts a finished download response.
func (u *Updater) Served(result string, bytes int64) {
	u.m.downloads.WithLabelValues(result).Inc()
	u.m.downloadBytes.Add(float64(bytes))
}

// PublicKey is the PEM of the signing key's public half.
func (u *Updater) PublicKey() []byte { return PublicKeyPEM(u.key) }
