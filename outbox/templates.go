package outbox

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
)

// Built-in templates of the SMS and e-mail channels. Variables are the keys
// of Message.Data; a missing one is an error (the message fails with reason
// "template"), never an empty hole in a text a recipient reads.
var builtinSMS = map[string]string{
	"parcel_ready":     `Your parcel is ready at {{.address}}. Pickup code: {{.code}}. Collect it by {{.deadline}}.`,
	"pickup_reminder":  `Reminder: your parcel at {{.address}} waits until {{.deadline}}. Pickup code: {{.code}}.`,
	"parcel_expired":   `Your parcel at {{.address}} was not collected in time and goes back to the sender.`,
	"parcel_picked_up": `Your parcel was collected from the locker at {{.address}} on {{.picked_up}}.`,
	"return_accepted":  `Your return was accepted at the locker at {{.address}} on {{.accepted}}.`,
	// alarms: the alarms package writes the subject and text.
	"alarm": `{{.subject}}`,
}

var builtinEmail = map[string]string{
	"parcel_ready": `Subject: Your parcel is ready for pickup
Hello,

your parcel is waiting for you in the parcel locker at

  {{.address}}

Pickup code: {{.code}}

Please collect it by {{.deadline}}. After that it goes back to the sender.
`,
	"pickup_reminder": `Subject: Reminder: your parcel is waiting
Hello,

your parcel is still waiting in the parcel locker at

  {{.address}}

Pickup code: {{.code}}

Please collect it by {{.deadline}}.
`,
	"alarm": `Subject: {{.subject}}
{{.text}}
`,
	"parcel_picked_up": `Subject: Your parcel was collected
Hello,

your parcel was collected from the parcel locker at {{.address}}
on {{.picked_up}}.
`,
	"return_accepted": `Subject: Your return was accepted
Hello,

your return was dropped off at the parcel locker at {{.address}}
on {{.accepted}} and goes back to the sender.
`,
	"parcel_expired": `Subject: Your parcel goes back to the sender
Hello,

your parcel in the parcel locker at {{.address}} was not collected in time
and goes back to the sender.
`,
}

// Templates are the parsed texts of the SMS and e-mail channels.
type Templates struct {
	raw     map[string]Draft // channel/name → the text (as an editor shows the default)
	sms     map[string]*template.Template
	subject map[string]*template.Template
	body    map[string]*template.Template
}

// LoadTemplates parses the built-in templates and, when dir is set, the
// overrides and additions in it: <name>.sms.txt and <name>.email.txt (whose
// first line is "Subject: …"). Every error is reported here, at start-up.
func LoadTemplates(dir string) (*Templates, error) {
	t := &Templates{raw: map[string]Draft{}, sms: map[string]*template.Template{}, subject: map[string]*template.Template{}, body: map[string]*template.Template{}}
	sms := map[string]string{}
	email := map[string]string{}
	src := map[string]string{}
	for k, v := range builtinSMS {
		sms[k], src["sms/"+k] = v, "built-in "+k+".sms.txt"
	}
	for k, v := range builtinEmail {
		email[k], src["email/"+k] = v, "built-in "+k+".email.txt"
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("templates: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".txt") {
				continue
			}
			name, kind, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".txt"), ".")
			if !ok || (kind != "sms" && kind != "email") || !nameRE.MatchString(name) {
				return nil, fmt.Errorf("templates: %s: name files <name>.sms.txt or <name>.email.txt (name of a-z, 0-9, '.', '_', '-')", filepath.Join(dir, e.Name()))
			}
			data, err := fs.ReadFile(os.DirFS(dir), e.Name())
			if err != nil {
				return nil, fmt.Errorf("templates: %w", err)
			}
			if kind == "sms" {
				sms[name] = string(data)
			} else {
				email[name] = string(data)
			}
			src[kind+"/"+name] = filepath.Join(dir, e.Name())
		}
	}
	var errs []error
	for name, text := range sms {
		tt, err := parse(name+".sms", strings.TrimRight(text, "\r\n"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src["sms/"+name], err))
			continue
		}
		t.sms[name] = tt
		t.raw["sms/"+name] = Draft{Event: name, Channel: ChannelSMS, Body: strings.TrimRight(text, "\r\n")}
	}
	for name, text := range email {
		first, rest, _ := strings.Cut(text, "\n")
		subj, ok := strings.CutPrefix(strings.TrimRight(first, "\r"), "Subject:")
		if !ok || strings.TrimSpace(subj) == "" {
			errs = append(errs, fmt.Errorf("%s: the first line must be \"Subject: …\"", src["email/"+name]))
			continue
		}
		st, err := parse(name+".subject", strings.TrimSpace(subj))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: subject: %w", src["email/"+name], err))
			continue
		}
		bt, err := parse(name+".email", strings.TrimLeft(rest, "\r\n"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src["email/"+name], err))
			continue
		}
		t.subject[name], t.body[name] = st, bt
		t.raw["email/"+name] = Draft{Event: name, Channel: ChannelEmail, Subject: strings.TrimSpace(subj), Body: strings.TrimLeft(rest, "\r\n")}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, fmt.Errorf("templates: %w", errors.Join(errs...))
	}
	return t, nil
}

func parse(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Parse(text)
}

// errTemplate marks a message whose template is unknown or does not render:
// retrying cannot help.
var errTemplate = errors.New("template")

func execute(t *template.Template, data map[string]any) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%w: %v", errTemplate, err)
	}
	return b.String(), nil
}

// SMS renders the text of an SMS.
func (t *Templates) SMS(name string, data map[string]any) (string, error) {
	tt, ok := t.sms[name]
	if !ok {
		return "", fmt.Errorf("%w: no SMS template %q", errTemplate, name)
	}
	return execute(tt, data)
}

// Email renders the subject and body of an e-mail.
func (t *Templates) Email(name string, data map[string]any) (subject, body string, err error) {
	st, ok := t.subject[name]
	if !ok {
		return "", "", fmt.Errorf("%w: no e-mail template %q", errTemplate, name)
	}
	if subject, err = execute(st, data); err != nil {
		return "", "", err
	}
	if strings.ContainsAny(subject, "\r\n") {
		return "", "", fmt.Errorf("%w: the subject of %q renders with a line break", errTemplate, name)
	}
	body, err = execute(t.body[name], data)
	return subject, body, err
}

// draft returns the default text of a template as a draft.
func (t *Templates) draft(name, channel string) (Draft, bool) {
	d, ok := t.raw[channel+"/"+name]
	return d, ok
}
