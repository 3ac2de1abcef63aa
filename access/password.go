package access

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Passwords are hashed with argon2id (RFC 9106), the first choice of OWASP's
// password storage guidance: memory-hard, so a stolen table is expensive to
// attack with GPUs, and without bcrypt's 72-byte truncation. The parameters are
// OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane): about 30 ms per
// hash on one core here. They are stored with every hash, so raising them
// later leaves old hashes verifiable.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Password length limits: long passphrases are welcome, megabyte ones are not.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// ErrWeakPassword means a new password is too short or too long.
var ErrWeakPassword = fmt.Errorf("password must be %d to %d characters", MinPasswordLen, MaxPasswordLen)

// hashing bounds how many hashes run at once: each one holds 19 MiB, and a
// burst of logins must not take all the hub's memory or cores.
var hashing = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

func acquireHashing(ctx context.Context) error {
	select {
	case hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func releaseHashing() { <-hashing }

// HashPassword returns the argon2id hash of password in the PHC string format.
func HashPassword(ctx context.Context, password string) (string, error) {
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return "", ErrWeakPassword
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if err := acquireHashing(ctx); err != nil {
		return "", err
	}
	defer releaseHashing()
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errBadHash means a stored hash cannot be parsed.
var errBadHash = errors.New("stored password hash is not argon2id in PHC format")

// VerifyPassword reports whether password matches the PHC-format hash.
func VerifyPassword(ctx context.Context, hash, password string) (bool, error) {
	if len(password) > MaxPasswordLen {
		return false, nil
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<20 || t == 0 || t > 16 || p == 0 {
		return false, errBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errBadHash
	}
	if err := acquireHashing(ctx); err != nil {
		return false, err
	}
	defer releaseHashing()
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is verified against when a username is unknown, so that a login
// for a user who does not exist takes as long as one with a wrong password.
// It is made on first use, not at start-up.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword(context.Background(), "not a password of anybody")
	if err != nil {
		panic(err)
	}
	return h
})

// RandomPassword returns a password of 24 random URL-safe characters (144 bits).
func RandomPassword() string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
