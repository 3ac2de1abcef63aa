package outbox_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/outbox"
)

// FuzzTemplateCheck: whatever an operator types, checking and previewing it
// answers quickly with a text or a *TemplateError; it never panics.
func FuzzTemplateCheck(f *testing.F) {
	for _, s := range []string{
		`Code {{.code}} at {{.address}}`,
		`{{if eq .name "x"}}{{.nickname}}{{else}}{{.code}}{{end}}`,
		`{{with .address}}{{.}}{{end}}`,
		`{{range 100000000}}x{{end}}`,
		`{{printf "%0999999999d" 1}}`,
		`{{printf "%s" .code | len}}`,
		`{{$x := .code}}{{$x}}{{$.deadline}}`,
		`{{define "a"}}{{end}}`,
		`{{.code.x}}`,
		`{{index .code 0}}{{slice .address 1 3}}`,
		`{{`,
	} {
		f.Add(s, "email")
	}
	defaults, err := outbox.LoadTemplates("")
	if err != nil {
		f.Fatal(err)
	}
	s := outbox.NewTemplateStore(nil, defaults)
	f.Fuzz(func(t *testing.T, body, channel string) {
		d := outbox.Draft{Event: outbox.EventParcelReady, Channel: channel, Body: body}
		if channel == "email" {
			d.Subject = "Subject {{.parcel}}"
		}
		start := time.Now()
		r, err := s.Preview(d, nil)
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("checking %q took %s", body, took)
		}
		if err != nil {
			var te *outbox.TemplateError
			if !errors.As(err, &te) || te.Code == "" {
				t.Fatalf("%q: error %v is not a TemplateError with a code", body, err)
			}
			return
		}
		if len(r.Text) > 64<<10 {
			t.Fatalf("%q rendered %d bytes", body, len(r.Text))
		}
	})
}
