package protocol

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeState(t *testing.T) {
	s, err := DecodeState([]byte(`{"boot":17,"seq":1042,"ts":1795389000100,"cells":{"A01":{"door":"open","lock":"unlocked","occupied":false}},"power":{"mains":true,"battery_v":12.6},"firmware":"1.4.2","desired_version":7}`))
	require.NoError(t, err)
	require.Equal(t, DoorOpen, s.Cells["A01"].Door)
	require.False(t, *s.Cells["A01"].Occupied)
	require.Equal(t, int64(7), *s.DesiredVersion)

	for _, bad := range []string{
		``, `[]`, `{"boot":1}`, `{"seq":1,"ts":1}`, `{"boot":1,"seq":1,"ts":1,"cells":{"a1":{}}}`,
		`{"boot":1,"seq":1,"ts":1,"cells":{"A01":{"door":"ajar"}}}`,
		`{"boot":1,"seq":1,"ts":1,"cells":{"A01":{"lock":"maybe"}}}`,
		`{"boot":1,"seq":1,"ts":1,"power":{"battery_v":-3}}`,
		`{"boot":1,"seq":1,"ts":1,"cells":{"A01":{"occupied":"yes"}}}`,
		`{"boot":1,"seq":1,"ts":1} {}`,
		`{"boot":1,"seq":1,"ts":1,"firmware":"` + strings.Repeat("x", 65) + `"}`,
		`{"boot":1,"seq":1,"ts":1,"x":"` + strings.Repeat("x", MaxStateBytes) + `"}`,
	} {
		_, err := DecodeState([]byte(bad))
		require.True(t, errors.Is(err, ErrInvalid), "%q: %v", bad, err)
	}
}

func TestDecodeEvent(t *testing.T) {
	e, err := DecodeEvent([]byte(`{"id":"7f3c","boot":17,"seq":1043,"ts":1795389000200,"type":"door_opened","cell":"A01","cause":"command:c-81"}`))
	require.NoError(t, err)
	require.Equal(t, "command:c-81", e.Cause)
	for _, bad := range []string{
		`{"boot":1,"seq":1,"ts":1,"type":"door_opened"}`,
		`{"id":"x","boot":1,"seq":1,"ts":1}`,
		`{"id":"x","boot":1,"seq":1,"ts":1,"type":"door_opened","cell":"door 1"}`,
		`{"id":"x","seq":1,"ts":1,"type":"tamper"}`,
	} {
		_, err := DecodeEvent([]byte(bad))
		require.True(t, errors.Is(err, ErrInvalid), "%q: %v", bad, err)
	}
}

// FuzzDecodeDeviceMessages: any payload is decoded or refused with ErrInvalid,
// never a panic, and what is accepted satisfies the checks.
func FuzzDecodeDeviceMessages(f *testing.F) {
	f.Add([]byte(`{"boot":17,"seq":1042,"ts":1795389000100,"cells":{"A01":{"door":"open","lock":"unlocked","occupied":false}},"power":{"mains":true,"battery_v":12.6},"firmware":"1.4.2","desired_version":7}`))
	f.Add([]byte(`{"id":"7f3c","boot":17,"seq":1043,"ts":1795389000200,"type":"door_opened","cell":"A01","cause":"command:c-81"}`))
	f.Add([]byte(`{"boot":1,"seq":1,"ts":1,"power":{"battery_v":1e400}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if s, err := DecodeState(payload); err == nil {
			if s.Boot == 0 || len(s.Cells) > MaxCells {
				t.Fatalf("accepted an invalid state: %+v", s)
			}
			for name := range s.Cells {
				if !ValidCellName(name) {
					t.Fatalf("accepted cell %q", name)
				}
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("state error without ErrInvalid: %v", err)
		}
		if e, err := DecodeEvent(payload); err == nil {
			if e.ID == "" || e.Type == "" || e.Boot == 0 {
				t.Fatalf("accepted an invalid event: %+v", e)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("event error without ErrInvalid: %v", err)
		}
	})
}
