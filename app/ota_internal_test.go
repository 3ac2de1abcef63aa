package app

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultOTAURL(t *testing.T) {
	require.Equal(t, "https://127.0.0.1:8443", defaultOTAURL([]string{"localhost", "127.0.0.1", "::1"}, "[::]:8443"))
	require.Equal(t, "https://hub.example.com:8443", defaultOTAURL([]string{"localhost", "hub.example.com", "10.0.0.5"}, "[::]:8443"))
	require.Equal(t, "https://[2001:db8::1]:9443", defaultOTAURL([]string{"2001:db8::1"}, "0.0.0.0:9443"))
}
