package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Notification templates: list, show, set, preview, reset (docs/outbox.md
// "Templates"). A template's text comes from a file (or - for stdin); an
// e-mail's first line is "Subject: …".
var templateCommands = []command{
	{
		name: "template list", args: "", nargs: 0,
		summary: "list the notification events, their fields and the stored overrides",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error { return c.templateList(ctx) }
		},
	},
	{
		name: "template show", args: "EVENT CHANNEL [--carrier C] [--language L]", nargs: 2,
		summary: "show the template a message of that carrier and language gets, and where it comes from",
		setup: func(fs *flag.FlagSet) runFunc {
			carrier := fs.String("carrier", "", "the parcel's `carrier`")
			lang := fs.String("language", "", "the recipient's `language` (BCP 47: de, de-AT)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.templateShow(ctx, args[0], args[1], *carrier, *lang)
			}
		},
	},
	{
		name: "template set", args: "EVENT CHANNEL FILE|- [--carrier C] [--language L]", nargs: 3,
		summary: "save an override (checked against the event's fields first)",
		doc: "EVENT: parcel_ready, pickup_reminder, parcel_expired, parcel_picked_up, return_accepted; CHANNEL: sms or email.\n" +
			"An e-mail file starts with a \"Subject: …\" line. Example:\n" +
			"  hubctl template set parcel_ready sms ready.de.txt --language de",
		setup: func(fs *flag.FlagSet) runFunc {
			carrier := fs.String("carrier", "", "only for this `carrier`'s parcels")
			lang := fs.String("language", "", "only for recipients of this `language`")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.templateSet(ctx, args[0], args[1], args[2], *carrier, *lang)
			}
		},
	},
	{
		name: "template reset", args: "EVENT CHANNEL [--carrier C] [--language L]", nargs: 2,
		summary: "remove an override: the next more general template applies again",
		setup: func(fs *flag.FlagSet) runFunc {
			carrier := fs.String("carrier", "", "the override's `carrier`")
			lang := fs.String("language", "", "the override's `language`")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.templateReset(ctx, args[0], args[1], *carrier, *lang)
			}
		},
	},
	{
		name: "template preview", args: "EVENT CHANNEL FILE|- [--parcel ID]", nargs: 3,
		summary: "render a template text with sample data (or a parcel's) without saving it",
		setup: func(fs *flag.FlagSet) runFunc {
			parcel := fs.String("parcel", "", "render with this parcel's data (the pickup code masked)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.templatePreview(ctx, args[0], args[1], args[2], *parcel)
			}
		},
	},
}

func init() {
	for i, cmd := range commands {
		if cmd.name == "api" {
			commands = append(commands[:i], append(append([]command{}, templateCommands...), commands[i:]...)...)
			return
		}
	}
	commands = append(commands, templateCommands...)
}

func (c *cli) templateList(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	list, err := api.Templates(ctx)
	if err != nil {
		return fmt.Errorf("template list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "EVENT\tFIELDS\tDESCRIPTION")
	for _, e := range list.Events {
		names := make([]string, len(e.Fields))
		for i, f := range e.Fields {
			names[i] = f.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Name, strings.Join(names, ","), e.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	if len(list.Templates) == 0 {
		fmt.Fprintln(c.stdout, "No overrides: every message gets the built-in text.")
		return nil
	}
	tw = newTable(c.stdout)
	fmt.Fprintln(tw, "EVENT\tCHANNEL\tCARRIER\tLANGUAGE\tUPDATED\tBY\tTEXT")
	for _, t := range list.Templates {
		text := t.Body
		if t.Subject != "" {
			text = t.Subject
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Event, t.Channel, orDash(t.Carrier), orDash(t.Language),
			fmtTime(t.UpdatedAt, c.loc), t.UpdatedBy, firstLine(text, 50))
	}
	return tw.Flush()
}

func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func (c *cli) templateShow(ctx context.Context, event, channel, carrier, lang string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	info, err := api.Template(ctx, event, channel, carrier, lang)
	if err != nil {
		return fmt.Errorf("template show: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	e := info.Effective
	fmt.Fprintf(c.stdout, "%s/%s for carrier %s, language %s: from %s", event, channel, orDash(carrier), orDash(lang), e.Source)
	if e.Source != "built-in" {
		fmt.Fprintf(c.stdout, " (carrier %s, language %s)", orDash(e.Carrier), orDash(e.Language))
	}
	fmt.Fprintln(c.stdout)
	fmt.Fprintln(c.stdout)
	_, err = io.WriteString(c.stdout, templateFile(e.TemplateDraft))
	return err
}

// templateFile is a draft as a file: "Subject: …" first for an e-mail.
func templateFile(d apiclient.TemplateDraft) string {
	s := d.Body
	if d.Subject != "" {
		s = "Subject: " + d.Subject + "\n" + s
	}
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// readTemplate reads a template file (or - for stdin) into a draft.
func (c *cli) readTemplate(event, channel, name string) (apiclient.TemplateDraft, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(c.stdin, 1<<20))
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return apiclient.TemplateDraft{}, err
	}
	d := apiclient.TemplateDraft{Event: event, Channel: channel, Body: string(data)}
	if channel == "email" {
		first, rest, _ := strings.Cut(d.Body, "\n")
		subj, ok := strings.CutPrefix(strings.TrimRight(first, "\r"), "Subject:")
		if !ok {
			return d, usagef("an e-mail template starts with a \"Subject: …\" line")
		}
		d.Subject, d.Body = strings.TrimSpace(subj), strings.TrimLeft(rest, "\r\n")
	} else {
		d.Body = strings.TrimRight(d.Body, "\r\n")
	}
	return d, nil
}

func (c *cli) templateSet(ctx context.Context, event, channel, file, carrier, lang string) error {
	d, err := c.readTemplate(event, channel, file)
	if err != nil {
		return fmt.Errorf("template set: %w", err)
	}
	d.Carrier, d.Language = carrier, lang
	api, err := c.client()
	if err != nil {
		return err
	}
	t, err := api.SetTemplate(ctx, d)
	if err != nil {
		return fmt.Errorf("template set: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Saved %s/%s for carrier %s, language %s.\n", t.Event, t.Channel, orDash(t.Carrier), orDash(t.Language))
	return nil
}

func (c *cli) templateReset(ctx context.Context, event, channel, carrier, lang string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	if err := api.DeleteTemplate(ctx, event, channel, carrier, lang); err != nil {
		return fmt.Errorf("template reset: %w", err)
	}
	fmt.Fprintf(c.stdout, "Removed the override %s/%s for carrier %s, language %s.\n", event, channel, orDash(carrier), orDash(lang))
	return nil
}

func (c *cli) templatePreview(ctx context.Context, event, channel, file, parcel string) error {
	d, err := c.readTemplate(event, channel, file)
	if err != nil {
		return fmt.Errorf("template preview: %w", err)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	r, err := api.PreviewTemplate(ctx, d, parcel)
	if err != nil {
		return fmt.Errorf("template preview: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if r.Subject != "" {
		fmt.Fprintf(c.stdout, "Subject: %s\n\n", r.Subject)
	}
	fmt.Fprintln(c.stdout, strings.TrimRight(r.Text, "\n"))
	return nil
}
