package web_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
)

// send is call with a content type of its own.
func send(t *testing.T, method, url, token, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]any{}
	if len(data) > 0 {
		require.NoError(t, json.Unmarshal(data, &out), string(data))
	}
	return resp.StatusCode, out
}

func TestModelsAPI(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	u := h.HTTPURL + "/api/v1/models"

	status, body := call(t, "POST", u, h.AdminToken, `{"id":"kx-4","manufacturer":"KEBA","name":"KePol 4",
		"layout":[{"name":"B01","size":"L"},{"name":"A01","size":"S"},{"name":"A02","size":"M"},{"name":"B02","size":"xl"}],
		"capabilities":["screen","keypad"]}`)
	require.Equal(t, 201, status, body)
	require.Equal(t, "kx-4", body["id"])
	require.EqualValues(t, 4, body["cells"])
	require.Equal(t, []any{"keypad", "screen"}, body["capabilities"])
	require.Equal(t, map[string]any{"name": "A01", "size": "S", "col": 1.0, "row": 1.0}, body["layout"].([]any)[0])
	require.Equal(t, map[string]any{"name": "B02", "size": "XL", "col": 2.0, "row": 2.0}, body["layout"].([]any)[3])

	for _, tt := range []struct {
		name, method, url, body string
		status                  int
		code, field             string
	}{
		{"exists", "POST", u, `{"id":"kx-4","manufacturer":"K","name":"N","layout":[{"name":"A01","size":"S"}]}`, 409, "exists", ""},
		{"bad size", "POST", u, `{"id":"m","manufacturer":"K","name":"N","layout":[{"name":"A01","size":"XXL"}]}`, 400, "invalid", "layout[0].size"},
		{"bad cell name", "POST", u, `{"id":"m","manufacturer":"K","name":"N","layout":[{"name":"1A","size":"S"}]}`, 400, "invalid", "layout[0].name"},
		{"no layout", "POST", u, `{"id":"m","manufacturer":"K","name":"N"}`, 400, "invalid", "layout"},
		{"unknown capability", "POST", u, `{"id":"m","manufacturer":"K","name":"N","layout":[{"name":"A01","size":"S"}],"capabilities":["fax"]}`, 400, "invalid", "capabilities"},
		{"bad id", "POST", u, `{"id":"Big Model","manufacturer":"K","name":"N","layout":[{"name":"A01","size":"S"}]}`, 400, "invalid", "id"},
		{"unknown field", "POST", u, `{"id":"m","colour":"red"}`, 400, "bad_json", ""},
		{"unknown model", "GET", u + "/nope", "", 404, "not_found", ""},
		{"put unknown", "PUT", u + "/nope", `{"manufacturer":"K","name":"N","layout":[{"name":"A01","size":"S"}]}`, 404, "not_found", ""},
		{"put other id", "PUT", u + "/kx-4", `{"id":"kx-5","manufacturer":"K","name":"N","layout":[{"name":"A01","size":"S"}]}`, 400, "invalid", "id"},
		{"delete unknown", "DELETE", u + "/nope", "", 404, "not_found", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := call(t, tt.method, tt.url, h.AdminToken, tt.body)
			require.Equal(t, tt.status, status, body)
			require.Equal(t, tt.code, body["code"])
			require.Contains(t, body["message"], tt.field)
		})
	}

	m, err := h.Admin.Model(ctx, "kx-4")
	require.NoError(t, err)
	require.Equal(t, "KePol 4", m.Name)
	m2, err := h.Admin.UpdateModel(ctx, "kx-4", apiclient.NewModel{Manufacturer: "KEBA", Name: "KePol 4 B", Layout: m.Layout, Capabilities: []string{"pos"}})
	require.NoError(t, err, "a model read back can be written back")
	require.Equal(t, "KePol 4 B", m2.Name)
	require.Equal(t, m.Layout, m2.Layout)

	// In use: no layout change, no delete.
	_, err = h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "L1", Model: "kx-4"})
	require.NoError(t, err)
	_, err = h.Admin.UpdateModel(ctx, "kx-4", apiclient.NewModel{Manufacturer: "KEBA", Name: "KePol 4 B", Layout: m.Layout[:2]})
	require.True(t, apiclient.IsCode(err, "in_use"), "%v", err)
	err = h.Admin.DeleteModel(ctx, "kx-4")
	require.True(t, apiclient.IsCode(err, "in_use"), "%v", err)
	var apiErr *apiclient.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 409, apiErr.Status)
	require.Contains(t, apiErr.Message, "used by 1 lockers")

	_, err = h.Admin.DeleteLocker(ctx, "L1")
	require.NoError(t, err)
	require.NoError(t, h.Admin.DeleteModel(ctx, "kx-4"))
	ms, err := h.Admin.Models(ctx)
	require.NoError(t, err)
	require.Empty(t, ms)
}

func TestLockersAPI(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	u := h.HTTPURL + "/api/v1/lockers"
	_, err := h.Admin.CreateModel(ctx, apiclient.NewModel{ID: "m3", Manufacturer: "M", Name: "Three",
		Layout: []apiclient.Cell{{Name: "A01", Size: "S"}, {Name: "A02", Size: "M"}, {Name: "B01", Size: "L"}}, Capabilities: []string{"camera"}})
	require.NoError(t, err)

	status, body := call(t, "POST", u, h.AdminToken, `{"id":"L1","model":"m3","address":"Hauptstraße 1, Berlin",
		"time_zone":"Europe/Berlin","lat":52.52,"lon":13.405,"segments":["berlin","pilot"],"carriers":["dhl"]}`)
	require.Equal(t, 201, status, body)
	require.EqualValues(t, 3, body["cells"])
	require.Equal(t, "Europe/Berlin", body["time_zone"])
	require.Equal(t, 52.52, body["lat"])
	require.Equal(t, []any{"berlin", "pilot"}, body["segments"])

	// The shorthand older clients (hubctl, lockersim) send.
	status, body = call(t, "POST", u, h.AdminToken, `{"id":"L2","cells":12,"segment":"north"}`)
	require.Equal(t, 201, status, body)
	require.Equal(t, []any{"north"}, body["segments"])
	require.Equal(t, []any{}, body["carriers"])
	require.Equal(t, "", body["model"])

	for _, tt := range []struct {
		name, method, url, body string
		status                  int
		code, field             string
	}{
		{"bad time zone", "POST", u, `{"id":"X","cells":1,"time_zone":"Mars/Olympus"}`, 400, "invalid", "time_zone"},
		{"lat 91", "POST", u, `{"id":"X","cells":1,"lat":91,"lon":0}`, 400, "invalid", "lat"},
		{"lat alone", "POST", u, `{"id":"X","cells":1,"lat":9}`, 400, "invalid", "lon"},
		{"unknown model", "POST", u, `{"id":"X","model":"nope"}`, 400, "invalid", "model"},
		{"cells against the model", "POST", u, `{"id":"X","model":"m3","cells":10}`, 400, "invalid", "cells"},
		{"segment and segments", "POST", u, `{"id":"X","cells":1,"segment":"a","segments":["b"]}`, 400, "invalid", "segment"},
		{"patch unknown locker", "PATCH", u + "/NOPE", `{"address":"x"}`, 404, "not_found", ""},
		{"patch bad time zone", "PATCH", u + "/L1", `{"time_zone":"Nowhere"}`, 400, "invalid", "time_zone"},
		{"patch lat 91", "PATCH", u + "/L1", `{"lat":91}`, 400, "invalid", "lat"},
		{"patch unknown model", "PATCH", u + "/L1", `{"model":"nope"}`, 400, "invalid", "model"},
		{"patch unknown field", "PATCH", u + "/L1", `{"colour":"red"}`, 400, "bad_json", ""},
		{"patch id", "PATCH", u + "/L1", `{"id":"L9"}`, 400, "bad_json", ""},
		{"patch wrong type", "PATCH", u + "/L1", `{"segments":"a"}`, 400, "bad_json", ""},
		{"patch cells null", "PATCH", u + "/L1", `{"cells":null}`, 400, "invalid", "cells"},
		{"delete unknown", "DELETE", u + "/NOPE", "", 404, "not_found", ""},
		{"cells of unknown", "GET", u + "/NOPE/cells", "", 404, "not_found", ""},
		{"bad status", "GET", u + "?status=sleeping", "", 400, "invalid", "status"},
		{"bad limit", "GET", u + "?limit=0", "", 400, "invalid", "limit"},
		{"huge limit", "GET", u + "?limit=10001", "", 400, "invalid", "limit"},
		{"bad offset", "GET", u + "?offset=-1", "", 400, "invalid", "offset"},
		{"unknown parameter", "GET", u + "?segmnet=north", "", 400, "invalid", "segmnet"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := call(t, tt.method, tt.url, h.AdminToken, tt.body)
			require.Equal(t, tt.status, status, body)
			require.Equal(t, tt.code, body["code"])
			require.Contains(t, body["message"], tt.field)
		})
	}
	l1, err := h.Admin.Locker(ctx, "L1")
	require.NoError(t, err)
	require.Equal(t, "Europe/Berlin", l1.TimeZone, "refused patches changed nothing")

	// PATCH: merge semantics.
	status, body = call(t, "PATCH", u+"/L1", h.AdminToken, `{"address":"Alexanderplatz 1","segments":["berlin"],"lat":null,"lon":null,"carriers":null}`)
	require.Equal(t, 200, status, body)
	require.Equal(t, "Alexanderplatz 1", body["address"])
	require.Equal(t, []any{"berlin"}, body["segments"])
	require.Equal(t, []any{}, body["carriers"])
	require.NotContains(t, body, "lat")
	require.Equal(t, "Europe/Berlin", body["time_zone"], "left out: unchanged")
	require.Equal(t, "m3", body["model"])

	l2, err := h.Admin.UpdateLocker(ctx, "L2", map[string]any{"model": "m3"})
	require.NoError(t, err)
	require.Equal(t, 3, l2.Cells)
	cells, err := h.Admin.LockerCells(ctx, "L2")
	require.NoError(t, err)
	require.Equal(t, []apiclient.Cell{{Name: "A01", Size: "S", Col: 1, Row: 1}, {Name: "A02", Size: "M", Col: 1, Row: 2}, {Name: "B01", Size: "L", Col: 2, Row: 1}}, cells)
	l2, err = h.Admin.UpdateLocker(ctx, "L2", map[string]any{"model": nil, "cells": 11})
	require.NoError(t, err)
	require.Equal(t, "", l2.Model)
	cells, err = h.Admin.LockerCells(ctx, "L2")
	require.NoError(t, err)
	require.Len(t, cells, 11)
	require.Equal(t, apiclient.Cell{Name: "B01", Size: "M", Col: 2, Row: 1}, cells[10])

	// List with filters, pages and totals.
	for i := range 5 {
		_, err := h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: fmt.Sprintf("P%d", i), Cells: 1, Segments: []string{"paged"},
			Address: fmt.Sprintf("Ringstraße %d, Wien", i), Carriers: []string{"post"}})
		require.NoError(t, err)
	}
	page, err := h.Admin.ListLockers(ctx, apiclient.LockerFilter{Segment: "paged", Limit: 2, Offset: 2})
	require.NoError(t, err)
	require.Equal(t, 5, page.Total)
	require.Equal(t, []string{"P2", "P3"}, lockerIDs(page.Lockers))
	page, err = h.Admin.ListLockers(ctx, apiclient.LockerFilter{Query: "WIEN", Carrier: "post", Status: "offline"})
	require.NoError(t, err)
	require.Equal(t, 5, page.Total)
	page, err = h.Admin.ListLockers(ctx, apiclient.LockerFilter{Model: "m3"})
	require.NoError(t, err)
	require.Equal(t, []string{"L1"}, lockerIDs(page.Lockers))
	page, err = h.Admin.ListLockers(ctx, apiclient.LockerFilter{Status: "online"})
	require.NoError(t, err)
	require.Equal(t, 0, page.Total)
	require.Equal(t, []apiclient.Locker{}, page.Lockers)
	status, body = call(t, "GET", u, h.AdminToken, "")
	require.Equal(t, 200, status)
	require.EqualValues(t, 7, body["total"])
	require.EqualValues(t, 100, body["limit"], "the default page")
	all, err := h.Admin.Lockers(ctx)
	require.NoError(t, err)
	require.Len(t, all, 7)
}

func lockerIDs(ls []apiclient.Locker) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

// TestDeleteLockerClosesItsDoor: deleting a locker revokes its certificates
// (the records stay), closes its live connection and refuses it from then on.
func TestDeleteLockerClosesItsDoor(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	cert := h.Locker("L1")
	dial := func() (*tls.Conn, []byte, error) {
		conn, err := tls.Dial("tcp", h.MQTTAddr, h.ClientTLS(cert))
		if err != nil {
			return nil, nil, err
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(connect("L1")); err != nil {
			conn.Close()
			return nil, nil, err
		}
		b := make([]byte, 4)
		_, err = io.ReadFull(conn, b)
		return conn, b, err
	}
	conn, ack, err := dial()
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, []byte{0x20, 0x02, 0x00, 0x00}, ack)
	hubtest.Eventually(t, 5*time.Second, "L1 online", func() bool { return h.App.Registry.Online("L1") })

	n, err := h.Admin.DeleteLocker(ctx, "L1")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = conn.Read(make([]byte, 16))
	require.Error(t, err, "the deleted locker's connection is closed")
	require.True(t, h.App.Registry.Revoked(cert.Serial))

	var revoked bool
	require.NoError(t, pgxQueryRow(t, h.DBURL, `SELECT revoked_at IS NOT NULL FROM fleet_certificates WHERE serial = $1`, cert.Serial).Scan(&revoked))
	require.True(t, revoked, "the certificate record stays, revoked")

	if c, _, err := dial(); err == nil {
		c.Close()
		t.Fatal("a deleted locker's certificate must be refused")
	}
	_, err = h.Admin.Locker(ctx, "L1")
	require.True(t, apiclient.IsCode(err, "not_found"), "%v", err)
}

func TestImportAPI(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	u := h.HTTPURL + "/api/v1/lockers/import"
	_, err := h.Admin.CreateModel(ctx, apiclient.NewModel{ID: "m2", Manufacturer: "M", Name: "Two",
		Layout: []apiclient.Cell{{Name: "A01", Size: "S"}, {Name: "A02", Size: "XL"}}})
	require.NoError(t, err)
	header := "id,model,cells,address,time_zone,lat,lon,segments,carriers\n"

	// A bad line: nothing is created, the error says where.
	status, body := send(t, "POST", u, h.AdminToken, "text/csv", header+
		"I-1,m2,,\"Kärntner Straße 1, Wien\",Europe/Vienna,48.2,16.37,vienna|pilot,post\n"+
		"I-2,,10,,Europe/Atlantis,,,,\n")
	require.Equal(t, 400, status, body)
	require.Equal(t, "invalid", body["code"])
	require.EqualValues(t, 3, body["line"])
	require.Equal(t, "time_zone", body["column"])
	require.Contains(t, body["message"], "line 3, column time_zone")
	for _, tt := range []struct {
		csv          string
		line         int
		column, text string
	}{
		{header + "I-1,,1,,,91,0,,\n", 2, "lat", "between -90 and 90"},
		{header + "I-1,nope,,,,,,,\n", 2, "model", "unknown model"},
		{header + "I-1,,1,,,,,,\nI-1,,1,,,,,,\n", 3, "id", "also on line 2"},
	} {
		status, body := send(t, "POST", u, h.AdminToken, "text/csv", tt.csv)
		require.Equal(t, 400, status, body)
		require.EqualValues(t, tt.line, body["line"], body)
		require.Equal(t, tt.column, body["column"], body)
		require.Contains(t, body["message"], tt.text)
	}
	ls, err := h.Admin.Lockers(ctx)
	require.NoError(t, err)
	require.Empty(t, ls, "nothing was created")

	status, body = send(t, "POST", u, h.AdminToken, "text/csv; charset=utf-8", header+
		"I-1,m2,,\"Kärntner Straße 1, Wien\",Europe/Vienna,48.2,16.37,vienna|pilot,post\n"+
		"I-2,,10,,,,,,\n")
	require.Equal(t, 201, status, body)
	require.EqualValues(t, 2, body["created"])
	l, err := h.Admin.Locker(ctx, "I-1")
	require.NoError(t, err)
	require.Equal(t, []string{"vienna", "pilot"}, l.Segments)
	require.Equal(t, 2, l.Cells)

	status, body = send(t, "POST", u, h.AdminToken, "text/csv", header+"I-3,,1,,,,,,\nI-2,,1,,,,,,\n")
	require.Equal(t, 409, status, body)
	require.Equal(t, "exists", body["code"])
	require.EqualValues(t, 3, body["line"])

	status, body = send(t, "POST", u, h.AdminToken, "application/json", `{"id":"x"}`)
	require.Equal(t, 415, status, body)

	// This route takes more than the 1 MiB of the others, up to 10 MiB.
	var big strings.Builder
	big.WriteString("id,cells,address\n")
	pad := strings.Repeat("x", 200)
	for i := 0; big.Len() < 3<<20; i++ {
		fmt.Fprintf(&big, "B-%05d,1,%s\n", i, pad)
	}
	rows := strings.Count(big.String(), "\n") - 1
	n, err := h.Admin.ImportLockers(ctx, []byte(big.String()))
	require.NoError(t, err, "a 3 MiB CSV")
	require.Equal(t, rows, n)

	huge := header + strings.Repeat("#", 10<<20)
	status, body = send(t, "POST", u, h.AdminToken, "text/csv", huge)
	require.Equal(t, 413, status)
	require.Equal(t, "too_large", body["code"])

	status, body = call(t, "POST", h.HTTPURL+"/api/v1/lockers", h.AdminToken, `{"id":"J","cells":1,"address":"`+strings.Repeat("y", 2<<20)+`"}`)
	require.Equal(t, 413, status, "other routes keep the 1 MiB limit")
	require.Equal(t, "too_large", body["code"])
}

func pgxQueryRow(t *testing.T, url, sql string, args ...any) pgx.Row {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn.QueryRow(context.Background(), sql, args...)
}
