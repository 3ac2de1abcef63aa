package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
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

// orList shows a list as "a, b", an empty one as "-".
func orList(l []string) string { return orDash(strings.Join(l, ", ")) }

// writeLockerTable prints lockers as a table, one row each.
func writeLockerTable(w io.Writer, ls []apiclient.Locker, loc *time.Location) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tMODEL\tCELLS\tSEGMENTS\tONLINE\tCONNECTED\tDISCONNECTED")
	for _, l := range ls {
		online := yesNo(l.Online)
		if !l.Enabled {
			online += " (disabled)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", l.ID, orDash(l.Model), l.Cells, orDash(strings.Join(l.Segments, ",")), online,
			fmtTimePtr(l.ConnectedAt, loc), fmtTimePtr(l.DisconnectedAt, loc))
	}
	return tw.Flush()
}

// sizeSummary counts cells by size: "S 10, M 20, L 8".
func sizeSummary(cells []apiclient.Cell) string {
	n := map[string]int{}
	for _, c := range cells {
		n[c.Size]++
	}
	var parts []string
	for _, s := range []string{"S", "M", "L", "XL"} {
		if n[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n[s]))
		}
	}
	return strings.Join(parts, ", ")
}

// writeLocker prints one locker as "field value" lines; with its cells, the
// cell count is broken down by size.
func writeLocker(w io.Writer, l apiclient.Locker, cells []apiclient.Cell, loc *time.Location) error {
	count := strconv.Itoa(l.Cells)
	if len(cells) > 0 {
		count += " (" + sizeSummary(cells) + ")"
	}
	location := "-"
	if l.Lat != nil && l.Lon != nil {
		location = strconv.FormatFloat(*l.Lat, 'f', -1, 64) + ", " + strconv.FormatFloat(*l.Lon, 'f', -1, 64)
	}
	tw := newTable(w)
	rows := [][2]string{
		{"ID", l.ID},
		{"Model", orDash(l.Model)},
		{"Cells", count},
		{"Address", orDash(l.Address)},
		{"Time zone", orDash(l.TimeZone)},
		{"Location", location},
		{"Segments", orList(l.Segments)},
		{"Carriers", orList(l.Carriers)},
		{"Enabled", yesNo(l.Enabled)},
		{"Online", yesNo(l.Online)},
		{"Connected", fmtTimePtr(l.ConnectedAt, loc)},
		{"Disconnected", fmtTimePtr(l.DisconnectedAt, loc)},
		{"Created", fmtTime(l.CreatedAt, loc)},
		{"Updated", fmtTime(l.UpdatedAt, loc)},
	}
	// Carriers by segment or quota too: who may use it in all.
	if own := slices.Sorted(slices.Values(l.Carriers)); len(l.CarrierAccess) > 0 && !slices.Equal(own, l.CarrierAccess) {
		i := slices.IndexFunc(rows, func(r [2]string) bool { return r[0] == "Carriers" })
		rows = slices.Insert(rows, i+1, [2]string{"Used by", strings.Join(l.CarrierAccess, ", ")})
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

// formatLayout writes a layout in the notation of model add
// ("A:SSMMLL,B:MMMM") when every column's rows run from 01 without a gap,
// else as a list of cells ("A01 S, A03 M").
func formatLayout(cells []apiclient.Cell) string {
	var cols []string
	sizes := map[string]string{}
	rows := map[string]int{}
	compact := true
	for _, c := range cells {
		i := strings.IndexFunc(c.Name, func(r rune) bool { return r >= '0' && r <= '9' })
		if i <= 0 {
			compact = false
			break
		}
		col, row := c.Name[:i], c.Name[i:]
		if _, ok := rows[col]; !ok {
			cols = append(cols, col)
		}
		rows[col]++
		if row != fmt.Sprintf("%02d", rows[col]) {
			compact = false
			break
		}
		sizes[col] += c.Size
	}
	if !compact {
		parts := make([]string, len(cells))
		for i, c := range cells {
			parts[i] = c.Name + " " + c.Size
		}
		return strings.Join(parts, ", ")
	}
	parts := make([]string, len(cols))
	for i, col := range cols {
		parts[i] = col + ":" + sizes[col]
	}
	return strings.Join(parts, ",")
}

// writeModelTable prints models as a table, one row each.
func writeModelTable(w io.Writer, ms []apiclient.Model) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tMANUFACTURER\tNAME\tCELLS\tSIZES\tCAPABILITIES")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, orDash(m.Manufacturer), orDash(m.Name), m.Cells,
			orDash(sizeSummary(m.Layout)), orDash(strings.Join(m.Capabilities, ",")))
	}
	return tw.Flush()
}

// writeModel prints one model as "field value" lines.
func writeModel(w io.Writer, m apiclient.Model, loc *time.Location) error {
	count := strconv.Itoa(m.Cells)
	if m.Cells > 0 {
		count += " (" + sizeSummary(m.Layout) + ")"
	}
	tw := newTable(w)
	for _, row := range [][2]string{
		{"ID", m.ID},
		{"Manufacturer", orDash(m.Manufacturer)},
		{"Name", orDash(m.Name)},
		{"Cells", count},
		{"Layout", orDash(formatLayout(m.Layout))},
		{"Capabilities", orList(m.Capabilities)},
		{"Created", fmtTime(m.CreatedAt, loc)},
		{"Updated", fmtTime(m.UpdatedAt, loc)},
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
