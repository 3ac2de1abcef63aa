package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

func templateCode(t *testing.T, err error) string {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, outbox.ErrInvalid)
	var te *outbox.TemplateError
	require.True(t, errors.As(err, &te), "%v is a TemplateError", err)
	return te.Code
}

// TestTemplateChecks: what an operator types is checked against the
// event's fields before it can be saved; the errors carry a code.
func TestTemplateChecks(t *testing.T) {
	defaults, err := outbox.LoadTemplates("")
	require.NoError(t, err)
	s := outbox.NewTemplateStore(nil, defaults)
	sms := func(event, body string) outbox.Draft {
		return outbox.Draft{Event: event, Channel: outbox.ChannelSMS, Body: body}
	}
	r, err := s.Preview(sms(outbox.EventParcelReady, `Code {{.code}} at {{.address}} until {{.deadline}}`), nil)
	require.NoError(t, err)
	require.Equal(t, "Code 48213907 at Hauptstraße 5, 10115 Berlin until Fri 4 Dec 2026, 18:00 CET", r.Text)

	for _, c := range []struct {
		d    outbox.Draft
		code string
		msg  string
	}{
		{sms(outbox.EventParcelReady, `Code {{.pickup_code}}`), outbox.CodeUnknownField, `unknown field "pickup_code"`},
		// in a branch the sample does not take: found by walking the template
		{sms(outbox.EventParcelReady, `{{if eq .name "x"}}{{.nickname}}{{end}}ok`), outbox.CodeUnknownField, `"nickname"`},
		// an expired parcel has no pickup code
		{sms(outbox.EventParcelExpired, `{{.code}}`), outbox.CodeUnknownField, `"code"`},
		{sms(outbox.EventParcelReady, `Code {{.code}`), outbox.CodeSyntax, "bad character"},
		{sms(outbox.EventParcelReady, `{{range 1000000000}}x{{end}}`), outbox.CodeUnsupported, "range"},
		{sms(outbox.EventParcelReady, `{{define "x"}}y{{end}}z`), outbox.CodeUnsupported, "define"},
		{sms(outbox.EventParcelReady, `{{printf "%0999999999d" 1}}`), outbox.CodeRender, "printf"},
		{sms(outbox.EventParcelReady, strings.Repeat("x", outbox.MaxSMSBody+1)), outbox.CodeTooLong, "at most 1600"},
		{sms(outbox.EventParcelReady, "  "), outbox.CodeEmpty, "empty"},
		{sms("parcel_lost", "x"), outbox.CodeUnknownEvent, "parcel_ready"},
		{outbox.Draft{Event: outbox.EventParcelReady, Channel: "fax", Body: "x"}, outbox.CodeBadChannel, "sms or email"},
		{outbox.Draft{Event: outbox.EventParcelReady, Channel: "sms", Language: "german", Body: "x"}, outbox.CodeBadLanguage, "BCP 47"},
		{outbox.Draft{Event: outbox.EventParcelReady, Channel: "email", Body: "x"}, outbox.CodeSubjectMissing, "subject"},
		{outbox.Draft{Event: outbox.EventParcelReady, Channel: "email", Subject: "{{.cod}}", Body: "x"}, outbox.CodeUnknownField, `"cod"`},
	} {
		_, err := s.Preview(c.d, nil)
		require.Equal(t, c.code, templateCode(t, err), "%+v: %v", c.d, err)
		require.Contains(t, err.Error(), c.msg)
	}

	// A preview with a parcel's data sees only the event's fields.
	_, err = s.Preview(sms(outbox.EventParcelExpired, `{{.address}}`), map[string]any{"address": "A", "code": "1"})
	require.NoError(t, err)
	// A known field the data lacks: a render error, not "unknown".
	_, err = s.Preview(sms(outbox.EventParcelReady, `{{.code}}`), map[string]any{"address": "A"})
	require.Equal(t, outbox.CodeRender, templateCode(t, err))

	lang, err := outbox.NormalizeLanguage("DE_at")
	require.NoError(t, err)
	require.Equal(t, "de-AT", lang)
}

// TestStoredTemplatesChooseTheMostSpecific: a message is rendered from the
// most specific stored template for its carrier and language, the
// built-in text when there is none; what was sent is recorded.
func TestStoredTemplatesChooseTheMostSpecific(t *testing.T) {
	got := make(chan struct{ ID, Text string }, 16)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ To, Text, ID string }
		require.NoError(t, json.NewDecoder(r.Body).Decode(&in))
		got <- struct{ ID, Text string }{in.ID, in.Text}
	}))
	t.Cleanup(gw.Close)
	cfg := fastConfig()
	cfg.SMS = outbox.SMSConfig{URL: gw.URL}
	r := newRig(t, cfg)
	defaults, err := outbox.LoadTemplates("")
	require.NoError(t, err)
	s := outbox.NewTemplateStore(r.pool, defaults)
	ctx := audit.WithActor(context.Background(), audit.Actor{Kind: audit.KindUser, ID: "1", Name: "admin", Role: "admin"})
	put := func(carrier, lang, body string) {
		_, created, err := s.Put(ctx, outbox.Draft{Event: outbox.EventParcelReady, Channel: outbox.ChannelSMS, Carrier: carrier, Language: lang, Body: body})
		require.NoError(t, err)
		require.True(t, created)
	}
	put("", "", "default {{.code}}")
	put("acme", "", "acme {{.code}}")
	put("", "de", "deutsch {{.code}}")
	put("acme", "de", "acme deutsch {{.code}}")

	data := map[string]any{"code": "111", "address": "A", "deadline": "D"}
	for _, c := range []struct{ id, carrier, lang, want string }{
		{"m-1", "", "", "default 111"},
		{"m-2", "acme", "", "acme 111"},
		{"m-3", "other", "de", "deutsch 111"},
		{"m-4", "acme", "de-AT", "acme deutsch 111"}, // a regional tag matches its language
		{"m-5", "acme", "fr", "acme 111"},
		{"m-6", "other", "fr", "default 111"},
	} {
		r.enqueue(outbox.Message{ID: c.id, Channel: outbox.ChannelSMS, To: "+4917012345678", Template: outbox.EventParcelReady,
			Data: data, Carrier: c.carrier, Language: c.lang, About: "p-1"})
		select {
		case m := <-got:
			require.Equal(t, c.id, m.ID)
			require.Equal(t, c.want, m.Text, "carrier %q language %q", c.carrier, c.lang)
		case <-time.After(5 * time.Second):
			t.Fatalf("no SMS for %s", c.id)
		}
	}
	hubtest.Eventually(t, 5*time.Second, "all sent", func() bool { s, _, _ := r.state("m-6"); return s == "sent" })
	ns, err := outbox.ByAbout(context.Background(), r.pool, "p-1")
	require.NoError(t, err)
	require.Len(t, ns, 6)
	require.Equal(t, "acme deutsch ********", ns[3].Text, "the text as sent, the pickup code masked")
	require.Equal(t, "sent", ns[3].State)
	require.NotNil(t, ns[3].SentAt)

	// Removing every override: the built-in text again.
	for _, k := range []outbox.Key{{outbox.EventParcelReady, "sms", "", ""}, {outbox.EventParcelReady, "sms", "acme", ""},
		{outbox.EventParcelReady, "sms", "", "de"}, {outbox.EventParcelReady, "sms", "acme", "de"}} {
		require.NoError(t, s.Delete(ctx, k))
	}
	require.ErrorIs(t, s.Delete(ctx, outbox.Key{outbox.EventParcelReady, "sms", "", ""}), outbox.ErrNotFound)
	r.enqueue(outbox.Message{ID: "m-7", Channel: outbox.ChannelSMS, To: "+4917012345678", Template: outbox.EventParcelReady, Data: data, Carrier: "acme", Language: "de"})
	select {
	case m := <-got:
		require.Equal(t, "Your parcel is ready at A. Pickup code: 111. Collect it by D.", m.Text)
	case <-time.After(5 * time.Second):
		t.Fatal("no SMS for m-7")
	}
}

// TestPutRefusesAnUnknownFieldAndChangesNothing: the stored template, the
// audit log and what is sent stay as they were.
func TestPutRefusesAnUnknownFieldAndChangesNothing(t *testing.T) {
	pool := pgtest.Pool(t, audit.Migrations(), outbox.Migrations())
	defaults, err := outbox.LoadTemplates("")
	require.NoError(t, err)
	s := outbox.NewTemplateStore(pool, defaults)
	ctx := context.Background()
	d := outbox.Draft{Event: outbox.EventPickedUp, Channel: outbox.ChannelEmail, Carrier: "acme", Subject: "Collected", Body: "Collected on {{.picked_up}}."}
	_, _, err = s.Put(ctx, d)
	require.NoError(t, err)
	var audits int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE object_type = 'template'`).Scan(&audits))
	require.Equal(t, 1, audits)

	bad := d
	bad.Body = "Collected on {{.picked_up}} by {{.collector}}."
	_, _, err = s.Put(ctx, bad)
	require.Equal(t, outbox.CodeUnknownField, templateCode(t, err))
	got, err := s.Get(ctx, outbox.Key{Event: d.Event, Channel: d.Channel, Carrier: "acme"})
	require.NoError(t, err)
	require.Equal(t, d.Body, got.Body)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE object_type = 'template'`).Scan(&audits))
	require.Equal(t, 1, audits)
	eff, err := s.Resolve(ctx, d.Event, d.Channel, "acme", "en")
	require.NoError(t, err)
	require.Equal(t, "carrier", eff.Source)
	require.Equal(t, d.Body, eff.Body)
	eff, err = s.Resolve(ctx, d.Event, d.Channel, "other", "")
	require.NoError(t, err)
	require.Equal(t, "built-in", eff.Source)
}
