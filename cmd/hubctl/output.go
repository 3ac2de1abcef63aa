package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

const timeLayout = "2006-01-02 15:04:05 MST"

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

func fmtTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format(timeLayout)
}

func fmtTimePtr(t *time.Time, loc *time.Location) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t, loc)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// orDash shows an empty string as "-" so table columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeLockerTable prints lockers as a table, one row each.
func writeLockerTable(w io.Writer, ls []apiclient.Locker, loc *time.Location) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tMODEL\tCELLS\tSEGMENT\tONLINE\tCONNECTED\tDISCONNECTED")
	for _, l := range ls {
		online := yesNo(l.Online)
		if !l.Enabled {
			online += " (disabled)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", l.ID, orDash(l.Model), l.Cells, orDash(l.Segment), online,
			fmtTimePtr(l.ConnectedAt, loc), fmtTimePtr(l.DisconnectedAt, loc))
	}
	return tw.Flush()
}

// writeLocker prints one locker as "field value" lines.
func writeLocker(w io.Writer, l apiclient.Locker, loc *time.Location) error {
	tw := newTable(w)
	for _, row := range [][2]string{
		{"ID", l.ID},
		{"Model", orDash(l.Model)},
		{"Cells", strconv.Itoa(l.Cells)},
		{"Segment", orDash(l.Segment)},
		{"Enabled", yesNo(l.Enabled)},
		{"Online", yesNo(l.Online)},
		{"Connected", fmtTimePtr(l.ConnectedAt, loc)},
		{"Disconnected", fmtTimePtr(l.DisconnectedAt, loc)},
		{"Created", fmtTime(l.CreatedAt, loc)},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

func writeEnrollToken(w io.Writer, t apiclient.EnrollToken, caPath string, now time.Time, loc *time.Location) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Locker\t%s\n", t.LockerID)
	fmt.Fprintf(tw, "Token\t%s\n", t.Token)
	fmt.Fprintf(tw, "Expires\t%s (in %s; valid for one enrolment)\n", fmtTime(t.ExpiresAt, loc), t.ExpiresAt.Sub(now).Round(time.Minute))
	if caPath != "" {
		fmt.Fprintf(tw, "CA\t%s\n", caPath)
	}
	return tw.Flush()
}

func revokedMessage(id string, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("Revoked 0 certificates of %s (it had none still valid).", id)
	case 1:
		return fmt.Sprintf("Revoked 1 certificate of %s.", id)
	default:
		return fmt.Sprintf("Revoked %d certificates of %s.", n, id)
	}
}
