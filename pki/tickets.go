package pki

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TicketKeysFile holds the TLS session ticket keys (mode 0600), so that lockers
// resume their TLS sessions across hub restarts: a resumed handshake needs no
// certificate signature or chain verification, which is what a reconnect storm
// of thousands of lockers spends its CPU on.
const TicketKeysFile = "tls-ticket.keys"

// ticketKeysKept is how many keys are kept: the newest encrypts new tickets,
// the older one still decrypts tickets issued before the last rotation.
const ticketKeysKept = 2

// LoadOrRotateTicketKeys returns the session ticket keys, newest first. When
// the file is missing or its newest key is older than rotateAfter, a new key
// is made and stored in front.
func LoadOrRotateTicketKeys(dir string, now time.Time, rotateAfter time.Duration) ([][32]byte, error) {
	path := filepath.Join(dir, TicketKeysFile)
	type entry struct {
		made time.Time
		key  [32]byte
	}
	var keys []entry
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			made, hexKey, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
			sec, err1 := strconv.ParseInt(made, 10, 64)
			raw, err2 := hex.DecodeString(hexKey)
			if !ok || err1 != nil || err2 != nil || len(raw) != 32 {
				f.Close()
				return nil, fmt.Errorf("pki: %s: malformed line (delete the file to start afresh)", path)
			}
			var e entry
			e.made = time.Unix(sec, 0)
			copy(e.key[:], raw)
			keys = append(keys, e)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	if len(keys) == 0 || now.Sub(keys[0].made) >= rotateAfter {
		var e entry
		if _, err := rand.Read(e.key[:]); err != nil {
			return nil, err
		}
		e.made = now
		keys = append([]entry{e}, keys...)
		if len(keys) > ticketKeysKept {
			keys = keys[:ticketKeysKept]
		}
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%d %s\n", k.made.Unix(), hex.EncodeToString(k.key[:]))
		}
		if err := writeFile(path, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
	}
	out := make([][32]byte, len(keys))
	for i, k := range keys {
		out[i] = k.key
	}
	return out, nil
}
