package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAbandonedRequestIsNotAnError: a request whose caller hung up (its
// context cancelled, the database call failing with it) is logged as
// abandoned, not as an ERROR, and recorded as 499; a failure while the
// caller still waits stays an ERROR and a 500.
func TestAbandonedRequestIsNotAnError(t *testing.T) {
	var log bytes.Buffer
	a := &API{d: Deps{Logger: slog.New(slog.NewTextHandler(&log, nil))}}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest(http.MethodGet, "/api/v1/lockers/L1/telemetry", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	a.internal(w, r, fmt.Errorf("authenticate: %w", context.Canceled))
	require.Equal(t, StatusClientClosed, w.Code)
	require.Contains(t, log.String(), "request abandoned by the caller")
	require.NotContains(t, log.String(), "level=ERROR")

	log.Reset()
	r = httptest.NewRequest(http.MethodGet, "/api/v1/lockers/L1/telemetry", nil)
	w = httptest.NewRecorder()
	a.internal(w, r, fmt.Errorf("authenticate: %w", context.Canceled)) // the hub's own deadline, not the caller's
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Contains(t, log.String(), "level=ERROR")

	log.Reset()
	w = httptest.NewRecorder()
	a.internal(w, r, errors.New("connection refused"))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Contains(t, log.String(), "level=ERROR")
}
