package web_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/pki"
)

func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(data, &out), string(data))
	}
	return resp.StatusCode, out
}

func TestAPIErrorsAreClearAndChangeNothing(t *testing.T) {
	h := hubtest.Start(t)
	u := h.HTTPURL + "/api/v1/lockers"
	for _, tc := range []struct {
		name, method, url, token, body string
		status                         int
		code                           string
	}{
		{"no token", "GET", u, "", "", 401, "unauthenticated"},
		{"wrong token", "GET", u, "lh_wrong", "", 401, "unauthenticated"},
		{"malformed JSON", "POST", u, h.AdminToken, `{"id":`, 400, "bad_json"},
		{"unknown field", "POST", u, h.AdminToken, `{"id":"L1","cells":4,"colour":"red"}`, 400, "bad_json"},
		{"wrong type", "POST", u, h.AdminToken, `{"id":"L1","cells":"four"}`, 400, "bad_json"},
		{"bad id", "POST", u, h.AdminToken, `{"id":"a/b","cells":4}`, 400, "invalid"},
		{"no cells", "POST", u, h.AdminToken, `{"id":"L1"}`, 400, "invalid"},
		{"oversize body", "POST", u, h.AdminToken, `{"id":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "too_large"},
		{"unknown locker", "GET", u + "/NOPE", h.AdminToken, "", 404, "not_found"},
		{"certificate for unknown locker", "POST", u + "/NOPE/certificates", h.AdminToken, `{"csr":""}`, 404, "not_found"},
		{"unknown endpoint", "GET", h.HTTPURL + "/api/v1/nothing", h.AdminToken, "", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(t, tc.method, tc.url, tc.token, tc.body)
			require.Equal(t, tc.status, status)
			require.Equal(t, tc.code, body["code"])
			require.NotEmpty(t, body["message"])
		})
	}
	ls, err := h.Admin.Lockers(context.Background())
	require.NoError(t, err)
	require.Empty(t, ls, "no bad request created anything")
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	h := hubtest.Start(t)
	status, _ := call(t, "GET", h.HTTPURL+"/healthz", "", "")
	require.Equal(t, 200, status)
	status, body := call(t, "GET", h.HTTPURL+"/readyz", "", "")
	require.Equal(t, 200, status)
	require.Equal(t, map[string]any{"broker": "ok", "database": "ok", "migrations": "ok", "telemetry": "ok"}, body["checks"])

	h.AddLocker("L1")
	resp, err := http.Get(h.HTTPURL + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, string(page), `<script type="module" src="/assets/app.js">`, "the dashboard")
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")

	resp, err = http.Get(h.HTTPURL + "/metrics")
	require.NoError(t, err)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(data), "lockerhub_broker_connected_lockers 0")

	h.App.Broker.Close()
	status, body = call(t, "GET", h.HTTPURL+"/readyz", "", "")
	require.Equal(t, 503, status, "not ready once the broker stopped listening")
	require.Contains(t, body["checks"].(map[string]any)["broker"], "not accepting")
}

func TestFactoryEnrolment(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	h.AddLocker("L1")
	tok, err := h.Admin.CreateEnrollToken(ctx, "L1", 0)
	require.NoError(t, err)

	ca, err := h.Admin.CA(ctx)
	require.NoError(t, err)
	caCert, err := pki.ParseCertPEM(ca)
	require.NoError(t, err)
	require.True(t, caCert.IsCA)

	device := apiclient.NewTLS(h.DeviceURL, "", &tls.Config{RootCAs: h.CAPool()})
	csr, key, err := pki.NewKeyAndCSR("L1")
	require.NoError(t, err)
	c, err := device.Enroll(ctx, tok.Token, csr)
	require.NoError(t, err)
	_, err = device.Enroll(ctx, tok.Token, csr)
	require.True(t, apiclient.IsCode(err, "token_invalid"), "a token works once: %v", err)

	// The enrolled certificate opens an MQTT session.
	pair, err := tls.X509KeyPair([]byte(c.Certificate), key)
	require.NoError(t, err)
	conn, err := tls.Dial("tcp", h.MQTTAddr, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: h.CAPool()})
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(connect("L1"))
	require.NoError(t, err)
	b := make([]byte, 4)
	_, err = io.ReadFull(conn, b)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 0x02, 0x00, 0x00}, b, "CONNACK accepted (MQTT 3.1.1)")

	// Renewal: authenticated by the current certificate, refused without one
	// and once it is revoked.
	renewer := apiclient.NewTLS(h.DeviceURL, "", &tls.Config{RootCAs: h.CAPool(), Certificates: []tls.Certificate{pair}})
	csr2, _, err := pki.NewKeyAndCSR("L1")
	require.NoError(t, err)
	c2, err := renewer.Renew(ctx, csr2)
	require.NoError(t, err)
	require.NotEqual(t, c.Serial, c2.Serial)
	_, err = device.Renew(ctx, csr2)
	require.True(t, apiclient.IsCode(err, "certificate_required"), "%v", err)
	_, err = h.Admin.RevokeCertificates(ctx, "L1")
	require.NoError(t, err)
	renewer.HTTP.CloseIdleConnections()
	_, err = renewer.Renew(ctx, csr2)
	require.Error(t, err, "a revoked certificate cannot renew")

	// The enrolment endpoint is on the device listener only.
	status, _ := call(t, "POST", h.HTTPURL+"/api/v1/enroll", "", `{"token":"x","csr":"y"}`)
	require.Equal(t, 404, status)
}

// connect is an MQTT 3.1.1 CONNECT with a clean session and keepalive 30.
func connect(id string) []byte {
	var b bytes.Buffer
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, byte(len(id))}
	body = append(body, id...)
	b.WriteByte(0x10)
	b.WriteByte(byte(len(body)))
	b.Write(body)
	return b.Bytes()
}
