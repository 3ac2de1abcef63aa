package outbox

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	tparse "text/template/parse"
	"unicode/utf8"
)

// Recipient notification events: the templates an operator may edit (in
// PostgreSQL, per channel, carrier and language; see TemplateStore). Each
// event has a fixed set of fields; a template that names any other field is
// refused when it is saved.
const (
	EventParcelReady    = "parcel_ready"     // deposited: the pickup code
	EventPickupReminder = "pickup_reminder"  // the storage period ends soon
	EventParcelExpired  = "parcel_expired"   // not collected in time (abandoned): goes back
	EventPickedUp       = "parcel_picked_up" // collected
	EventReturnAccepted = "return_accepted"  // a customer return was accepted at a locker
)

// Field is one variable a template of an event may use.
type Field struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Example     string `json:"example"`
}

// Event is a recipient notification and the fields its templates may use.
type Event struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Fields      []Field `json:"fields"`
}

var commonFields = []Field{
	{"parcel", "the parcel's id", "P-7K2M9Q"},
	{"reference", "the sender's reference (may be empty)", "ORDER-1001"},
	{"name", "the recipient's name (may be empty)", "Erika Mustermann"},
	{"carrier", "the carrier's id (may be empty)", "acme"},
	{"locker", "the locker's id", "BER-0042"},
	{"cell", "the cell", "A03"},
	{"address", "the locker's address (or \"locker <id>\")", "Hauptstraße 5, 10115 Berlin"},
}

var deadlineFields = []Field{
	{"deadline", "end of the storage period in the locker's time zone, as a recipient reads it", "Fri 4 Dec 2026, 18:00 CET"},
	{"expires_at", "end of the storage period, RFC 3339 UTC", "2026-12-04T17:00:00Z"},
}

var codeField = Field{"code", "the 8-digit pickup code", "48213907"}

// Events lists the editable notification events, in a stable order.
var Events = []Event{
	{EventParcelReady, "The parcel was deposited: where it is, the pickup code and until when.", fields(commonFields, []Field{codeField}, deadlineFields)},
	{EventPickupReminder, "The storage period ends soon (reminder before it ends).", fields(commonFields, []Field{codeField}, deadlineFields)},
	{EventParcelExpired, "The storage period is over: the parcel was abandoned and goes back to the sender.", fields(commonFields, deadlineFields)},
	{EventPickedUp, "The parcel was collected.", fields(commonFields, []Field{{"picked_up", "when it was collected, in the locker's time zone", "Thu 3 Dec 2026, 17:42 CET"}})},
	{EventReturnAccepted, "A customer return was dropped off at a locker and accepted.", fields(commonFields, []Field{{"accepted", "when it was dropped off, in the locker's time zone", "Thu 3 Dec 2026, 17:42 CET"}})},
}

func fields(groups ...[]Field) []Field {
	var out []Field
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// LookupEvent returns the event of that name.
func LookupEvent(name string) (Event, bool) {
	for _, e := range Events {
		if e.Name == name {
			return e, true
		}
	}
	return Event{}, false
}

// Sample is the event's fields with their example values: what a preview
// renders and what a template is checked against when saved.
func (e Event) Sample() map[string]any {
	m := make(map[string]any, len(e.Fields))
	for _, f := range e.Fields {
		m[f.Name] = f.Example
	}
	return m
}

// Restrict keeps of data only the event's fields: a preview with a real
// parcel's data sees exactly what a template may use.
func (e Event) Restrict(data map[string]any) map[string]any {
	m := make(map[string]any, len(e.Fields))
	for _, f := range e.Fields {
		if v, ok := data[f.Name]; ok {
			m[f.Name] = v
		}
	}
	return m
}

// Size limits of a stored template (bytes).
const (
	MaxSMSBody     = 1600 // ten concatenated SMS segments
	MaxEmailBody   = 20000
	MaxSubject     = 200
	maxRenderBytes = 64 << 10
)

// Codes of a TemplateError (the "code" of the API's 400 answer).
const (
	CodeUnknownEvent   = "unknown_event"
	CodeBadChannel     = "invalid_channel"
	CodeBadCarrier     = "invalid_carrier"
	CodeBadLanguage    = "invalid_language"
	CodeEmpty          = "template_empty"
	CodeTooLong        = "template_too_long"
	CodeSyntax         = "template_syntax"
	CodeUnknownField   = "template_unknown_field"
	CodeUnsupported    = "template_unsupported"
	CodeRender         = "template_render"
	CodeSubjectMissing = "subject_required"
	CodeSubjectBreak   = "subject_line_break"
)

// TemplateError is a template refused at save (or preview) time. It wraps
// ErrInvalid.
type TemplateError struct {
	Code    string `json:"code"`
	Part    string `json:"part,omitempty"` // "subject" or "body"
	Message string `json:"message"`
}

func (e *TemplateError) Error() string {
	if e.Part != "" {
		return e.Part + ": " + e.Message
	}
	return e.Message
}

func (e *TemplateError) Unwrap() error { return ErrInvalid }

func terr(code, part, format string, args ...any) *TemplateError {
	return &TemplateError{Code: code, Part: part, Message: fmt.Sprintf(format, args...)}
}

var (
	// carrierRE is the form of carrier ids (as in access and fleet).
	carrierRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	// languageRE is a BCP 47 tag of language and optional region or
	// script, e.g. "de", "de-AT", "zh-Hant", "es-419".
	languageRE = regexp.MustCompile(`^[a-z]{2,3}(-([A-Z]{2}|[0-9]{3}|[A-Z][a-z]{3}))?$`)
	// wideVerb is a printf verb with a width or precision of 3+ digits:
	// refused so a template cannot make a huge string.
	wideVerb = regexp.MustCompile(`%[^a-zA-Z%]*[0-9]{3,}`)
)

// NormalizeLanguage returns the canonical form of a BCP 47 tag ("DE-at" →
// "de-AT", "zh-hant" → "zh-Hant") or an error.
func NormalizeLanguage(tag string) (string, error) {
	if tag == "" {
		return "", nil
	}
	lang, rest, _ := strings.Cut(strings.ReplaceAll(tag, "_", "-"), "-")
	out := strings.ToLower(lang)
	if rest != "" {
		switch {
		case len(rest) == 4:
			out += "-" + strings.ToUpper(rest[:1]) + strings.ToLower(rest[1:])
		default:
			out += "-" + strings.ToUpper(rest)
		}
	}
	if !languageRE.MatchString(out) {
		return "", terr(CodeBadLanguage, "", "language %q must be a BCP 47 tag such as \"de\" or \"de-AT\"", tag)
	}
	return out, nil
}

// funcs replaces printf so that a template cannot allocate a huge string.
var funcs = template.FuncMap{
	"printf": func(format string, args ...any) (string, error) {
		if wideVerb.MatchString(format) {
			return "", errors.New("printf: widths and precisions of 100 or more are not allowed")
		}
		return fmt.Sprintf(format, args...), nil
	},
}

// parseChecked parses text as the template part of an event and checks it
// against exactly the event's fields: an unknown field, a syntax error, an
// unsupported action or a too long result is a *TemplateError.
func parseChecked(e Event, part, text string) (*template.Template, error) {
	t, err := template.New(e.Name + "." + part).Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, terr(CodeSyntax, part, "%s", cleanTemplateError(err))
	}
	if len(t.Templates()) > 1 {
		return nil, terr(CodeUnsupported, part, "{{define}} and {{block}} are not supported")
	}
	if msg := unsupported(t.Root); msg != "" {
		return nil, terr(CodeUnsupported, part, "%s", msg)
	}
	known := map[string]bool{}
	for _, f := range e.Fields {
		known[f.Name] = true
	}
	if name := unknownField(t.Root, known); name != "" {
		return nil, terr(CodeUnknownField, part, "unknown field %q: %s templates may use %s", name, e.Name, fieldList(e))
	}
	if _, err := render(t, e.Sample()); err != nil {
		return nil, classify(e, part, err)
	}
	return t, nil
}

func fieldList(e Event) string {
	names := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		names[i] = "." + f.Name
	}
	return strings.Join(names, ", ")
}

var noEntry = regexp.MustCompile(`map has no entry for key "([^"]*)"`)

func classify(e Event, part string, err error) *TemplateError {
	if m := noEntry.FindStringSubmatch(err.Error()); m != nil {
		for _, f := range e.Fields {
			if f.Name == m[1] {
				return terr(CodeRender, part, "the data has no value for .%s", m[1])
			}
		}
		return terr(CodeUnknownField, part, "unknown field %q: %s templates may use %s", m[1], e.Name, fieldList(e))
	}
	return terr(CodeRender, part, "%s", cleanTemplateError(err))
}

// cleanTemplateError drops the "template: name:" prefix the user does not need.
func cleanTemplateError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "template: ")
	if i := strings.Index(s, ": "); i > 0 && strings.Contains(s[:i], ".") && !strings.Contains(s[:i], " ") {
		s = s[i+2:]
	}
	return s
}

// unsupported finds actions templates of notifications do not need and
// that could run for long: range (over a number it loops that often) and
// template calls.
func unsupported(n tparse.Node) string {
	switch n := n.(type) {
	case *tparse.ListNode:
		if n == nil {
			return ""
		}
		for _, c := range n.Nodes {
			if m := unsupported(c); m != "" {
				return m
			}
		}
	case *tparse.RangeNode:
		return "{{range}} is not supported (the fields are plain values)"
	case *tparse.TemplateNode:
		return "{{template}} is not supported"
	case *tparse.IfNode:
		return firstOf(unsupported(n.List), unsupported(n.ElseList))
	case *tparse.WithNode:
		return firstOf(unsupported(n.List), unsupported(n.ElseList))
	}
	return ""
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// unknownField walks the tree for a .field (first element of a field
// chain) that is not known. Variables ($x.y) and chains after the first
// element are left to the sample execution.
func unknownField(n tparse.Node, known map[string]bool) string {
	var walk func(n tparse.Node) string
	walkPipe := func(p *tparse.PipeNode) string {
		if p == nil {
			return ""
		}
		for _, c := range p.Cmds {
			for _, a := range c.Args {
				if m := walk(a); m != "" {
					return m
				}
			}
		}
		return ""
	}
	walk = func(n tparse.Node) string {
		switch n := n.(type) {
		case *tparse.ListNode:
			if n == nil {
				return ""
			}
			for _, c := range n.Nodes {
				if m := walk(c); m != "" {
					return m
				}
			}
		case *tparse.ActionNode:
			return walkPipe(n.Pipe)
		case *tparse.PipeNode:
			return walkPipe(n)
		case *tparse.FieldNode:
			if len(n.Ident) > 0 && !known[n.Ident[0]] {
				return n.Ident[0]
			}
		case *tparse.ChainNode:
			return walk(n.Node)
		case *tparse.IfNode:
			return firstOf(firstOf(walkPipe(n.Pipe), walk(n.List)), walk(n.ElseList))
		case *tparse.WithNode:
			// Inside with, "." is the value, not the data: the sample run checks it.
			return walkPipe(n.Pipe)
		}
		return ""
	}
	return walk(n)
}

// limited is a writer that refuses to grow past its limit.
type limited struct {
	bytes.Buffer
	max int
}

var errTooBig = errors.New("the text renders longer than 64 KiB")

func (l *limited) Write(p []byte) (int, error) {
	if l.Len()+len(p) > l.max {
		return 0, errTooBig
	}
	return l.Buffer.Write(p)
}

func render(t *template.Template, data map[string]any) (string, error) {
	b := &limited{max: maxRenderBytes}
	if err := t.Execute(b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Draft is a template as an operator edits it.
type Draft struct {
	Event    string `json:"event"`
	Channel  string `json:"channel"`            // sms, email
	Carrier  string `json:"carrier,omitempty"`  // "" for every carrier
	Language string `json:"language,omitempty"` // BCP 47, "" for every language
	Subject  string `json:"subject,omitempty"`  // email only
	Body     string `json:"body"`
}

// compiled is a checked draft.
type compiled struct {
	event   Event
	subject *template.Template // email only
	body    *template.Template
}

// check validates and parses a draft (normalising its language).
func (d *Draft) check() (compiled, error) {
	e, ok := LookupEvent(d.Event)
	if !ok {
		names := make([]string, len(Events))
		for i, ev := range Events {
			names[i] = ev.Name
		}
		return compiled{}, terr(CodeUnknownEvent, "", "event %q is not one of %s", d.Event, strings.Join(names, ", "))
	}
	if d.Channel != ChannelSMS && d.Channel != ChannelEmail {
		return compiled{}, terr(CodeBadChannel, "", "channel must be sms or email, got %q", d.Channel)
	}
	if d.Carrier != "" && !carrierRE.MatchString(d.Carrier) {
		return compiled{}, terr(CodeBadCarrier, "", "carrier %q must be 1 to 64 of a-z, 0-9, '.', '_', '-'", d.Carrier)
	}
	lang, err := NormalizeLanguage(d.Language)
	if err != nil {
		return compiled{}, err
	}
	d.Language = lang
	if !utf8.ValidString(d.Subject) || !utf8.ValidString(d.Body) {
		return compiled{}, terr(CodeSyntax, "", "the text is not valid UTF-8")
	}
	c := compiled{event: e}
	limit := MaxSMSBody
	if d.Channel == ChannelEmail {
		limit = MaxEmailBody
		if strings.TrimSpace(d.Subject) == "" {
			return compiled{}, terr(CodeSubjectMissing, "subject", "an e-mail template needs a subject")
		}
		if len(d.Subject) > MaxSubject {
			return compiled{}, terr(CodeTooLong, "subject", "the subject is %d bytes, at most %d", len(d.Subject), MaxSubject)
		}
		if strings.ContainsAny(d.Subject, "\r\n") {
			return compiled{}, terr(CodeSubjectBreak, "subject", "the subject must be one line")
		}
		if c.subject, err = parseChecked(e, "subject", d.Subject); err != nil {
			return compiled{}, err
		}
		if s, _ := render(c.subject, e.Sample()); strings.ContainsAny(s, "\r\n") {
			return compiled{}, terr(CodeSubjectBreak, "subject", "the subject renders with a line break")
		}
	} else if d.Subject != "" {
		return compiled{}, terr(CodeBadChannel, "subject", "an SMS has no subject")
	}
	if strings.TrimSpace(d.Body) == "" {
		return compiled{}, terr(CodeEmpty, "body", "the text is empty")
	}
	if len(d.Body) > limit {
		return compiled{}, terr(CodeTooLong, "body", "the text is %d bytes, at most %d for %s", len(d.Body), limit, d.Channel)
	}
	if c.body, err = parseChecked(e, "body", d.Body); err != nil {
		return compiled{}, err
	}
	return c, nil
}

// Rendered is a template's text for given data.
type Rendered struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text"`
}

func (c compiled) render(data map[string]any) (Rendered, error) {
	var r Rendered
	var err error
	if c.subject != nil {
		if r.Subject, err = render(c.subject, data); err != nil {
			return r, classify(c.event, "subject", err)
		}
		if strings.ContainsAny(r.Subject, "\r\n") {
			return r, terr(CodeSubjectBreak, "subject", "the subject renders with a line break")
		}
	}
	if r.Text, err = render(c.body, data); err != nil {
		return r, classify(c.event, "body", err)
	}
	return r, nil
}
