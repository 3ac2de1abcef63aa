package protocol

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeOTAStatus(t *testing.T) {
	s, err := DecodeOTAStatus([]byte(`{"boot":3,"seq":9,"ts":1795389000000,"rollout":7,"version":"1.5.0","step":"downloading","bytes":4096}`))
	require.NoError(t, err)
	require.Equal(t, OTAStatus{Header: Header{Boot: 3, Seq: 9, TS: 1795389000000}, Rollout: 7, Version: "1.5.0", Step: OTADownloading, Bytes: 4096}, s)
	s, err = DecodeOTAStatus([]byte(`{"boot":3,"seq":10,"ts":1795389000000,"rollout":7,"version":"1.5.0","step":"failed","reason":"hash_mismatch"}`))
	require.NoError(t, err)
	require.Equal(t, "hash_mismatch", s.Reason)

	h := `"boot":1,"seq":1,"ts":1795389000000,`
	for _, tc := range []struct{ payload, reason string }{
		{``, "not a JSON object"},
		{`[]`, "not a JSON object"},
		{`{` + h + `"rollout":1,"version":"1","step":"installed"} {}`, "trailing data"},
		{`{"seq":1,"ts":1,"rollout":1,"version":"1","step":"installed"}`, "boot"},
		{`{` + h + `"rollout":0,"version":"1","step":"installed"}`, "rollout"},
		{`{` + h + `"rollout":1,"version":"","step":"installed"}`, "version"},
		{`{` + h + `"rollout":1,"version":"1 2","step":"installed"}`, "version"},
		{`{` + h + `"rollout":1,"version":"` + strings.Repeat("v", 65) + `","step":"installed"}`, "version"},
		{`{` + h + `"rollout":1,"version":"1","step":"exploded"}`, "step"},
		{`{` + h + `"rollout":1,"version":"1","step":"failed"}`, "needs a reason"},
		{`{` + h + `"rollout":1,"version":"1","step":"failed","reason":"a\nb"}`, "control"},
		{`{` + h + `"rollout":1,"version":"1","step":"failed","reason":"` + strings.Repeat("r", 201) + `"}`, "longer"},
		{`{` + h + `"rollout":1,"version":"1","step":"downloading","bytes":-1}`, "negative"},
		{`{` + h + `"rollout":1,"version":"1","step":"downloading","extra":1}`, "unknown field"},
		{`{` + h + `"rollout":"1","version":"1","step":"downloading"}`, "expected shape"},
		{`{"x":"` + strings.Repeat("x", MaxOTAStatusBytes) + `"}`, "over the limit"},
	} {
		_, err := DecodeOTAStatus([]byte(tc.payload))
		require.ErrorIs(t, err, ErrInvalid, tc.payload)
		require.ErrorContains(t, err, tc.reason, tc.payload)
	}
}

// FuzzDecodeOTAStatus: any payload is decoded into a valid status or refused
// with ErrInvalid, never a panic.
func FuzzDecodeOTAStatus(f *testing.F) {
	f.Add([]byte(`{"boot":3,"seq":9,"ts":1795389000000,"rollout":7,"version":"1.5.0","step":"downloading","bytes":4096}`))
	f.Add([]byte(`{"boot":3,"seq":10,"ts":1795389000000,"rollout":7,"version":"1.5.0","step":"failed","reason":"hash_mismatch"}`))
	f.Add([]byte(`{"boot":1,"seq":1,"ts":1,"rollout":-1,"version":"\u0000","step":"installed"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		s, err := DecodeOTAStatus(payload)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if s.Boot == 0 || s.TS <= 0 || s.Rollout <= 0 || !ValidVersion(s.Version) || s.Bytes < 0 || len(s.Reason) > MaxOTAReasonLen {
			t.Fatalf("accepted an invalid status: %+v", s)
		}
		if s.Step == OTAFailed && s.Reason == "" {
			t.Fatalf("accepted failed without reason")
		}
	})
}
