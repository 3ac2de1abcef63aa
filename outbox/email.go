package outbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"
)

// SMTPConfig is the mail server of the e-mail channel.
type SMTPConfig struct {
	Addr     string // host:port; empty: the channel is not configured and e-mails wait
	From     string // the sender address
	User     string // optional: AUTH PLAIN (only over TLS or to localhost, as net/smtp insists)
	Password string
	// TLS, when set, is used for STARTTLS (tests pass their own roots);
	// nil: the system roots and the host of Addr.
	TLS *tls.Config
}

func (d *Dispatcher) sendEmail(ctx context.Context, m *claimed) error {
	c := d.cfg.SMTP
	if c.Addr == "" {
		return waiting("not_configured", "the mail server is not configured (--smtp-addr)")
	}
	r, err := d.tpls.render(ctx, *m)
	if errors.Is(err, errTemplate) {
		return permanent("template", err)
	}
	if err != nil {
		return err
	}
	subject, body := r.Subject, r.Text
	m.rendered = subject + "\n" + body
	msg := buildMail(c.From, m.To, m.ID, subject, body, time.Now())
	deadline := time.Now().Add(d.cfg.RequestTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return permanent("config", fmt.Errorf("--smtp-addr: %w", err))
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", c.Addr, err)
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	err = smtpSend(conn, host, c, m.To, msg)
	_ = conn.Close()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("smtp %s: %w", c.Addr, ctx.Err())
	}
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return refused(fmt.Errorf("smtp %s: %w", c.Addr, err)) // 5xx: permanent by SMTP's own rules
	}
	return fmt.Errorf("smtp %s: %w", c.Addr, err)
}

func smtpSend(conn net.Conn, host string, c SMTPConfig, to string, msg []byte) error {
	cl, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Hello("lockerhub"); err != nil {
		return err
	}
	if ok, _ := cl.Extension("STARTTLS"); ok {
		tc := c.TLS
		if tc == nil {
			tc = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := cl.StartTLS(tc); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if c.User != "" {
		if err := cl.Auth(smtp.PlainAuth("", c.User, c.Password, host)); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := cl.Mail(c.From); err != nil {
		return err
	}
	if err := cl.Rcpt(to); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return cl.Quit()
}

// buildMail writes a plain-text UTF-8 message (quoted-printable) whose
// Message-ID carries the outbox id, so duplicates can be recognised.
func buildMail(from, to, id, subject, body string, now time.Time) []byte {
	var b strings.Builder
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", (&mail.Address{Address: from}).String())
	hdr("To", (&mail.Address{Address: to}).String())
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+strings.NewReplacer("<", "", ">", "", "@", ".", " ", "").Replace(id)+"@lockerhub>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")))
	_ = qp.Close()
	return []byte(b.String())
}
