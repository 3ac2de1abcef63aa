package app_test

import (
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

type mailMsg struct{ To, Subject, Body string }

// decoded returns the mailbox's messages with the To address, the decoded
// subject and the quoted-printable body decoded.
func decoded(mb *mailbox) []mailMsg {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var out []mailMsg
	for _, raw := range mb.mail {
		hdr, body, _ := strings.Cut(raw, "\r\n\r\n")
		var m mailMsg
		for _, h := range strings.Split(hdr, "\r\n") {
			if v, ok := strings.CutPrefix(h, "Subject: "); ok {
				m.Subject, _ = new(mime.WordDecoder).DecodeHeader(v)
			}
			if v, ok := strings.CutPrefix(h, "To: "); ok {
				m.To = strings.Trim(v, "<> ")
			}
		}
		b, _ := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
		m.Body = strings.ReplaceAll(string(b), "\r\n", "\n")
		out = append(out, m)
	}
	return out
}

func findMail(mb *mailbox, to, subject string) (mailMsg, bool) {
	for _, m := range decoded(mb) {
		if m.To == to && strings.Contains(m.Subject, subject) {
			return m, true
		}
	}
	return mailMsg{}, false
}

// TestEditedTemplatesAreSentEndToEnd: an admin edits the notification
// templates through the API (per carrier and per language); every
// notification of a parcel's life — ready with the pickup code, reminder,
// picked up, expired — is rendered from the most specific edited template
// and delivered to a local SMS gateway and SMTP server; a template with an
// unknown field is refused at save and changes nothing; the parcel lists
// what was sent.
func TestEditedTemplatesAreSentEndToEnd(t *testing.T) {
	in := &inbox{sms: map[string][]string{}, webhooks: map[string]string{}}
	gateway := httptest.NewServer(http.HandlerFunc(in.smsHandler))
	t.Cleanup(gateway.Close)
	mb := newMailbox(t)
	var skew atomic.Int64 // the parcels' clock runs ahead by this much
	h := hubtest.Start(t, func(c *app.Config) {
		c.Outbox.SMS.URL = gateway.URL
		c.Outbox.SMTP.Addr, c.Outbox.SMTP.From = mb.ln.Addr().String(), "lockers@example.com"
		c.Outbox.PollInterval = 200 * time.Millisecond
		c.Commands.ConfirmWithin = 3 * time.Second
		c.Parcels.Sweep = 100 * time.Millisecond
		c.Parcels.ReminderBefore = 2 * time.Hour // a 1 h storage period: reminded at once
		c.Parcels.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	ctx := context.Background()

	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = 1, 4, "TPL"
	cfg.Ramp, cfg.StatusEvery = 0, 0
	cfg.DoorClose = time.Hour
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	simCtx, stopSim := context.WithCancel(ctx)
	require.NoError(t, sim.Start(simCtx))
	t.Cleanup(func() { stopSim(); sim.Stop() })
	const lockerID = "TPL00001"
	l := sim.Locker(lockerID)
	hubtest.Eventually(t, 30*time.Second, "locker online with its cells", func() bool {
		row, ok := h.App.Overview.Row(lockerID)
		return h.App.Broker.Online(lockerID) && ok && row.FreeCells["M"] == 4
	})
	_, err = h.Admin.UpdateLocker(ctx, lockerID, map[string]any{"carriers": []string{"dhl", "ups"}, "address": "Hauptstraße 5, 10115 Berlin"})
	require.NoError(t, err)

	// The admin edits the wording.
	set := func(d apiclient.TemplateDraft) {
		t.Helper()
		_, err := h.Admin.SetTemplate(ctx, d)
		require.NoError(t, err, "%+v", d)
	}
	set(apiclient.TemplateDraft{Event: "parcel_ready", Channel: "sms", Body: "READY-DEFAULT {{.code}} at {{.address}}"})
	set(apiclient.TemplateDraft{Event: "parcel_ready", Channel: "sms", Carrier: "dhl", Body: "READY-DHL {{.code}}"})
	set(apiclient.TemplateDraft{Event: "parcel_ready", Channel: "sms", Carrier: "dhl", Language: "de", Body: "DHL-DE: Abholcode {{.code}}, bis {{.deadline}}"})
	set(apiclient.TemplateDraft{Event: "parcel_ready", Channel: "email", Language: "de", Subject: "Ihr Paket {{.parcel}} ist da", Body: "Abholcode: {{.code}}\n{{.address}}\n"})
	set(apiclient.TemplateDraft{Event: "pickup_reminder", Channel: "sms", Language: "de", Body: "ERINNERUNG {{.code}} bis {{.deadline}}"})
	set(apiclient.TemplateDraft{Event: "parcel_picked_up", Channel: "sms", Carrier: "dhl", Body: "PICKED-DHL {{.parcel}} {{.picked_up}}"})
	set(apiclient.TemplateDraft{Event: "parcel_expired", Channel: "sms", Carrier: "ups", Language: "fr", Body: "EXPIRE-UPS-FR {{.address}}"})
	set(apiclient.TemplateDraft{Event: "parcel_expired", Channel: "email", Subject: "EXPIRED {{.reference}}", Body: "Gone back: {{.parcel}}"})

	// An unknown field: refused at save with its code, nothing changed.
	before, err := h.Admin.Template(ctx, "parcel_ready", "sms", "dhl", "de")
	require.NoError(t, err)
	_, err = h.Admin.SetTemplate(ctx, apiclient.TemplateDraft{Event: "parcel_ready", Channel: "sms", Carrier: "dhl", Language: "de", Body: "Code {{.pickup_code}}"})
	require.True(t, apiclient.IsCode(err, "template_unknown_field"), "%v", err)
	require.Contains(t, err.Error(), `"pickup_code"`)
	after, err := h.Admin.Template(ctx, "parcel_ready", "sms", "dhl", "de")
	require.NoError(t, err)
	require.Equal(t, before.Template.Body, after.Template.Body)
	require.Equal(t, before.Template.UpdatedAt, after.Template.UpdatedAt)
	require.Equal(t, "carrier+language", after.Effective.Source)

	create := func(carrier, ref, phone, email, lang string) apiclient.Parcel {
		t.Helper()
		p, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: lockerID, Size: "M", Reference: ref, Carrier: carrier, StorageHours: 1,
			Recipient: apiclient.Recipient{Name: "Ann", Phone: phone, Email: email, Language: lang}}, ref)
		require.NoError(t, err)
		open, err := h.Admin.DropoffParcel(ctx, p.ID)
		require.NoError(t, err)
		hubtest.Eventually(t, 10*time.Second, "the reserved cell opened for the courier", func() bool {
			return l.View(true).Cells[open.Parcel.Cell].Door == protocol.DoorOpen
		})
		require.NoError(t, l.SetOccupied(open.Parcel.Cell, true))
		require.NoError(t, l.CloseDoor(open.Parcel.Cell))
		hubtest.Eventually(t, 10*time.Second, p.ID+" deposited", func() bool {
			got, err := h.Admin.Parcel(ctx, p.ID)
			require.NoError(t, err)
			return got.State == "deposited"
		})
		got, err := h.Admin.Parcel(ctx, p.ID)
		require.NoError(t, err)
		return got
	}
	smsWith := func(phone, prefix string) string {
		t.Helper()
		var text string
		hubtest.Eventually(t, 15*time.Second, "SMS "+prefix+" to "+phone, func() bool {
			in.mu.Lock()
			defer in.mu.Unlock()
			for _, s := range in.sms[phone] {
				if strings.HasPrefix(s, prefix) {
					text = s
					return true
				}
			}
			return false
		})
		return text
	}

	// dhl, German (regional tag): the carrier+language SMS, the language e-mail.
	a := create("dhl", "A-1", "+491701000001", "ann@example.org", "de-AT")
	ready := smsWith("+491701000001", "DHL-DE: Abholcode ")
	code := eightDigits.FindString(ready)
	require.NotEmpty(t, code)
	require.Contains(t, ready, "bis ")
	var mail mailMsg
	hubtest.Eventually(t, 15*time.Second, "e-mail to ann", func() bool {
		var ok bool
		mail, ok = findMail(mb, "ann@example.org", "Ihr Paket "+a.ID+" ist da")
		return ok
	})
	require.Contains(t, mail.Body, "Abholcode: "+code)
	require.Contains(t, mail.Body, "Hauptstraße 5, 10115 Berlin")
	// The storage period (1 h) ends within ReminderBefore: the German reminder.
	require.Contains(t, smsWith("+491701000001", "ERINNERUNG "), code)

	// The recipient collects it: the dhl "picked up" text.
	res := l.EnterCode(ctx, code, 10*time.Second)
	require.Nil(t, res.Error, "%+v", res)
	hubtest.Eventually(t, 10*time.Second, "cell opened for the recipient", func() bool {
		return l.View(true).Cells[a.Cell].Door == protocol.DoorOpen
	})
	require.NoError(t, l.SetOccupied(a.Cell, false))
	require.NoError(t, l.CloseDoor(a.Cell))
	require.Contains(t, smsWith("+491701000001", "PICKED-DHL "), a.ID)

	// ups, no language: the stored default SMS (no carrier or language override applies).
	b := create("ups", "B-1", "+491701000002", "", "")
	require.Contains(t, smsWith("+491701000002", "READY-DEFAULT "), "Hauptstraße 5")
	// ups, French: left to expire; the ups+fr SMS and the default e-mail override.
	c := create("ups", "C-1", "+491701000003", "cleo@example.org", "fr")
	smsWith("+491701000003", "READY-DEFAULT ")
	skew.Store(int64(2 * time.Hour))
	require.Equal(t, "EXPIRE-UPS-FR Hauptstraße 5, 10115 Berlin", smsWith("+491701000003", "EXPIRE-UPS-FR"))
	hubtest.Eventually(t, 15*time.Second, "expiry e-mail to cleo", func() bool {
		m, ok := findMail(mb, "cleo@example.org", "EXPIRED C-1")
		return ok && strings.Contains(m.Body, "Gone back: "+c.ID)
	})
	_ = b

	// The parcel shows what was sent, when, through which channel.
	var ns []apiclient.ParcelNotification
	hubtest.Eventually(t, 10*time.Second, "every notification of "+a.ID+" recorded as sent", func() bool {
		ns, err = h.Admin.ParcelNotifications(ctx, a.ID)
		require.NoError(t, err)
		sent := 0
		for _, n := range ns {
			if n.Channel != "webhook" && n.State == "sent" && n.SentAt != nil {
				sent++
			}
		}
		return sent == 6 // ready, reminder and picked up, each by SMS and e-mail
	})
	byID := map[string]apiclient.ParcelNotification{}
	for _, n := range ns {
		byID[n.ID] = n
	}
	n := byID[a.ID+":parcel_ready:sms"]
	require.Equal(t, "sms", n.Channel)
	require.Equal(t, "+491701000001", n.To)
	require.Equal(t, "dhl", n.Carrier)
	require.Equal(t, "de-AT", n.Language)
	require.Equal(t, strings.ReplaceAll(ready, code, "********"), n.Text, "the text as sent, the pickup code masked")
	require.NotContains(t, n.Text, code)
	require.Equal(t, "Ihr Paket "+a.ID+" ist da", byID[a.ID+":parcel_ready:email"].Subject)
	// Preview with the parcel's data masks the code.
	r, err := h.Admin.PreviewTemplate(ctx, apiclient.TemplateDraft{Event: "parcel_ready", Channel: "sms", Body: "{{.code}} {{.cell}}"}, a.ID)
	require.NoError(t, err)
	require.Equal(t, "******** "+a.Cell, r.Text)
}
