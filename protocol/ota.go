package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Firmware updates (DESIGN decision 20). The hub starts an update with the
// ota.install RPC; the locker answers at once ({"accepted":true}), then
// downloads the artifact over HTTPS from the device listener with its client
// certificate (Range requests resume an interrupted download), checks its
// SHA-256 and the hub's Ed25519 signature, installs it, reboots and reports
// the new firmware in its full state after the reconnect. Each step is
// published on lockers/{id}/ota/status.

// OTAInstallParams are the params of ota.install.
type OTAInstallParams struct {
	Rollout  int64  `json:"rollout"`  // the rollout the update belongs to; echoed in every status
	Artifact int64  `json:"artifact"` // artifact id
	Version  string `json:"version"`  // the firmware version it installs
	URL      string `json:"url"`      // https URL on the device listener
	Size     int64  `json:"size"`     // bytes
	SHA256   string `json:"sha256"`   // lower-case hex of the file's SHA-256
	// Signature is the hub's Ed25519 signature (base64, standard encoding) of
	// OTASignedMessage(Version, SHA256, Size).
	Signature string `json:"signature"`
}

// OTASignedMessage is what the hub signs for an artifact: the file is
// covered through its digest, so a locker verifies the signature without
// holding the whole file in memory.
func OTASignedMessage(version, sha256Hex string, size int64) []byte {
	return []byte("lockerhub-ota-v1\n" + version + "\n" + sha256Hex + "\n" + strconv.FormatInt(size, 10) + "\n")
}

// OTA steps reported on ota/status, in order; failed may follow any of them.
const (
	OTADownloading = "downloading"
	OTADownloaded  = "downloaded"
	OTAVerified    = "verified"
	OTAInstalling  = "installing"
	OTAInstalled   = "installed"
	OTAFailed      = "failed"
)

// OTASteps lists the steps a locker reports, in order.
var OTASteps = []string{OTADownloading, OTADownloaded, OTAVerified, OTAInstalling, OTAInstalled, OTAFailed}

// Limits of ota/status.
const (
	MaxOTAStatusBytes = 2 << 10
	MaxOTAReasonLen   = 200
	MaxVersionLen     = 64
)

// OTAStatus is one progress report: lockers/{id}/ota/status.
type OTAStatus struct {
	Header
	Rollout int64  `json:"rollout"`
	Version string `json:"version"`
	Step    string `json:"step"`
	Reason  string `json:"reason,omitempty"` // with failed: e.g. "download: …", "hash_mismatch", "bad_signature", "install: …"
	Bytes   int64  `json:"bytes,omitempty"`  // downloading: bytes so far
}

// ValidVersion reports whether s can be a firmware version: 1–64 printable
// ASCII characters without spaces.
func ValidVersion(s string) bool {
	return s != "" && len(s) <= MaxVersionLen && printableASCII(s)
}

// DecodeOTAStatus decodes and checks lockers/{id}/ota/status: a JSON object
// with the header, a positive rollout id, a valid version, a known step and,
// for failed, a reason of at most MaxOTAReasonLen bytes. Unknown fields are
// refused.
func DecodeOTAStatus(payload []byte) (OTAStatus, error) {
	if len(payload) > MaxOTAStatusBytes {
		return OTAStatus{}, invalid("payload of %d bytes is over the limit of %d", len(payload), MaxOTAStatusBytes)
	}
	if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) == 0 || p[0] != '{' {
		return OTAStatus{}, invalid("ota status is not a JSON object")
	}
	var s OTAStatus
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return OTAStatus{}, invalid("not JSON of the expected shape: %v", err)
	}
	if dec.More() {
		return OTAStatus{}, invalid("trailing data after the JSON object")
	}
	if err := s.Header.validate(); err != nil {
		return OTAStatus{}, err
	}
	switch {
	case s.Rollout <= 0:
		return OTAStatus{}, invalid("rollout must be a positive id")
	case !ValidVersion(s.Version):
		return OTAStatus{}, invalid("version must be 1 to %d printable ASCII characters", MaxVersionLen)
	case s.Bytes < 0:
		return OTAStatus{}, invalid("bytes is negative")
	case len(s.Reason) > MaxOTAReasonLen:
		return OTAStatus{}, invalid("reason is longer than %d bytes", MaxOTAReasonLen)
	case strings.ContainsFunc(s.Reason, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return OTAStatus{}, invalid("reason holds control characters")
	}
	known := false
	for _, st := range OTASteps {
		known = known || s.Step == st
	}
	if !known {
		return OTAStatus{}, invalid("step %q (want one of %s)", s.Step, strings.Join(OTASteps, ", "))
	}
	if s.Step == OTAFailed && s.Reason == "" {
		return OTAStatus{}, invalid("failed needs a reason")
	}
	return s, nil
}
