package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/pki"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ptr[T any](v T) *T { return &v }

// layout builds cells from "A01:S A02:M …".
func layout(spec string) []fleet.Cell {
	var out []fleet.Cell
	for _, f := range strings.Fields(spec) {
		name, size, _ := strings.Cut(f, ":")
		out = append(out, fleet.Cell{Name: name, Size: size})
	}
	return out
}

// fieldOf returns the field a validation error names.
func fieldOf(t *testing.T, err error) string {
	t.Helper()
	require.ErrorIs(t, err, fleet.ErrInvalid)
	var fe *fleet.FieldError
	require.ErrorAs(t, err, &fe, "%v", err)
	return fe.Field
}

type changeLog struct {
	mu  sync.Mutex
	all []fleet.Change
}

func (c *changeLog) record(ch fleet.Change) { c.mu.Lock(); c.all = append(c.all, ch); c.mu.Unlock() }

func (c *changeLog) take() []fleet.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.all
	c.all = nil
	return out
}

func TestCellNames(t *testing.T) {
	for _, tt := range []struct {
		name     string
		col, row int
	}{{"A01", 1, 1}, {"A10", 1, 10}, {"B01", 2, 1}, {"Z99", 26, 99}, {"AA03", 27, 3}, {"AZ01", 52, 1}, {"BA01", 53, 1}, {"CV10", 100, 10}} {
		col, row, err := fleet.ParseCellName(tt.name)
		require.NoError(t, err, tt.name)
		require.Equal(t, [2]int{tt.col, tt.row}, [2]int{col, row}, tt.name)
		require.Equal(t, tt.name, fleet.CellName(tt.col, tt.row))
	}
	for _, bad := range []string{"", "A", "A1", "A001", "a01", "01", "A00", "ABC01", "A-1", "Ä01"} {
		_, _, err := fleet.ParseCellName(bad)
		require.Error(t, err, bad)
	}
	cells := fleet.DefaultLayout(23)
	require.Len(t, cells, 23)
	require.Equal(t, fleet.Cell{Name: "A01", Size: "M", Col: 1, Row: 1}, cells[0])
	require.Equal(t, fleet.Cell{Name: "A10", Size: "M", Col: 1, Row: 10}, cells[9])
	require.Equal(t, fleet.Cell{Name: "B01", Size: "M", Col: 2, Row: 1}, cells[10])
	require.Equal(t, fleet.Cell{Name: "C03", Size: "M", Col: 3, Row: 3}, cells[22])
	require.Equal(t, "AA01", fleet.DefaultLayout(261)[260].Name, "after Z comes AA, as in lockersim")
}

func TestModels(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	changes := &changeLog{}
	r.OnChange(changes.record)

	good := fleet.NewModel{ID: "kx-6", Manufacturer: " KEBA ", Name: "KePol 6",
		Layout:       layout("B01:m A02:M A01:S B02:XL A03:L B03:S"),
		Capabilities: []string{"screen", "keypad", "screen"}}
	for _, tt := range []struct {
		name  string
		edit  func(*fleet.NewModel)
		field string
	}{
		{"ID not a slug", func(m *fleet.NewModel) { m.ID = "KX 6" }, "id"},
		{"upper-case ID", func(m *fleet.NewModel) { m.ID = "KX-6" }, "id"},
		{"no manufacturer", func(m *fleet.NewModel) { m.Manufacturer = " " }, "manufacturer"},
		{"no name", func(m *fleet.NewModel) { m.Name = "" }, "name"},
		{"no layout", func(m *fleet.NewModel) { m.Layout = nil }, "layout"},
		{"bad cell name", func(m *fleet.NewModel) { m.Layout = layout("A01:S A1:M") }, "layout[1].name"},
		{"cell twice", func(m *fleet.NewModel) { m.Layout = layout("A01:S A01:M") }, "layout[1].name"},
		{"bad size", func(m *fleet.NewModel) { m.Layout = layout("A01:XXL") }, "layout[0].size"},
		{"unknown capability", func(m *fleet.NewModel) { m.Capabilities = []string{"laser"} }, "capabilities"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			tt.edit(&m)
			_, _, err := r.CreateModel(ctx, m)
			require.Equal(t, tt.field, fieldOf(t, err), "%v", err)
		})
	}
	m, c, err := r.CreateModel(ctx, good)
	require.NoError(t, err)
	require.Equal(t, "KEBA", m.Manufacturer)
	require.Equal(t, 6, m.Cells)
	require.Equal(t, []string{"keypad", "screen"}, m.Capabilities, "sorted, once each")
	require.Equal(t, []fleet.Cell{
		{"A01", "S", 1, 1, ""}, {"A02", "M", 1, 2, ""}, {"A03", "L", 1, 3, ""},
		{"B01", "M", 2, 1, ""}, {"B02", "XL", 2, 2, ""}, {"B03", "S", 2, 3, ""},
	}, m.Layout, "ordered by column and row, sizes upper-case, positions derived")
	require.Equal(t, fleet.Change{Entity: "model", ID: "kx-6", Action: "create", After: m}, c)
	require.Equal(t, []fleet.Change{c}, changes.take())

	_, _, err = r.CreateModel(ctx, good)
	require.ErrorIs(t, err, fleet.ErrExists)
	got, err := r.GetModel(ctx, "kx-6")
	require.NoError(t, err)
	require.Equal(t, m, got)
	_, err = r.GetModel(ctx, "nope")
	require.ErrorIs(t, err, fleet.ErrNotFound)

	// Name and capabilities change freely; the ID never.
	upd := good
	upd.ID, upd.Name, upd.Capabilities = "", "KePol 6 rev. B", nil
	m2, c, err := r.UpdateModel(ctx, "kx-6", upd)
	require.NoError(t, err)
	require.Equal(t, "KePol 6 rev. B", m2.Name)
	require.Equal(t, []string{}, m2.Capabilities)
	require.Equal(t, m, c.Before)
	require.Equal(t, m2, c.After)
	require.Equal(t, "update", c.Action)
	upd.ID = "other"
	_, _, err = r.UpdateModel(ctx, "kx-6", upd)
	require.Equal(t, "id", fieldOf(t, err))
	_, _, err = r.UpdateModel(ctx, "nope", fleet.NewModel{Manufacturer: "a", Name: "b", Layout: layout("A01:S")})
	require.ErrorIs(t, err, fleet.ErrNotFound)

	// While a locker uses it: no layout change, no delete.
	_, _, err = r.Create(ctx, fleet.NewLocker{ID: "L1", Model: "kx-6"})
	require.NoError(t, err)
	upd.ID, upd.Layout = "", layout("A01:S")
	_, _, err = r.UpdateModel(ctx, "kx-6", upd)
	require.ErrorIs(t, err, fleet.ErrInUse)
	require.ErrorContains(t, err, "used by 1 lockers")
	_, err = r.DeleteModel(ctx, "kx-6")
	require.ErrorIs(t, err, fleet.ErrInUse)

	_, _, err = r.Delete(ctx, "L1")
	require.NoError(t, err)
	m3, _, err := r.UpdateModel(ctx, "kx-6", upd)
	require.NoError(t, err, "unused: the layout may change")
	require.Equal(t, 1, m3.Cells)
	changes.take()
	c, err = r.DeleteModel(ctx, "kx-6")
	require.NoError(t, err)
	require.Equal(t, fleet.Change{Entity: "model", ID: "kx-6", Action: "delete", Before: m3}, c)
	require.Equal(t, []fleet.Change{c}, changes.take())
	_, err = r.DeleteModel(ctx, "kx-6")
	require.ErrorIs(t, err, fleet.ErrNotFound)
	ms, err := r.Models(ctx)
	require.NoError(t, err)
	require.Empty(t, ms)
}

func TestCreateLockerDescribesIt(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	_, _, err := r.CreateModel(ctx, fleet.NewModel{ID: "m3", Manufacturer: "M", Name: "Three", Layout: layout("A01:S A02:M B01:L")})
	require.NoError(t, err)

	for _, tt := range []struct {
		name  string
		n     fleet.NewLocker
		field string
	}{
		{"bad time zone", fleet.NewLocker{ID: "X", Cells: 1, TimeZone: "Mars/Olympus_Mons"}, "time_zone"},
		{"Local is no time zone", fleet.NewLocker{ID: "X", Cells: 1, TimeZone: "Local"}, "time_zone"},
		{"lat 91", fleet.NewLocker{ID: "X", Cells: 1, Lat: ptr(91.0), Lon: ptr(0.0)}, "lat"},
		{"lon -181", fleet.NewLocker{ID: "X", Cells: 1, Lat: ptr(0.0), Lon: ptr(-181.0)}, "lon"},
		{"lat without lon", fleet.NewLocker{ID: "X", Cells: 1, Lat: ptr(1.0)}, "lon"},
		{"unknown model", fleet.NewLocker{ID: "X", Model: "nope"}, "model"},
		{"cells against the model", fleet.NewLocker{ID: "X", Model: "m3", Cells: 4}, "cells"},
		{"no cells, no model", fleet.NewLocker{ID: "X"}, "cells"},
		{"segment and segments", fleet.NewLocker{ID: "X", Cells: 1, Segment: "a", Segments: []string{"b"}}, "segment"},
		{"separator in a segment", fleet.NewLocker{ID: "X", Cells: 1, Segments: []string{"a|b"}}, "segments"},
		{"empty carrier", fleet.NewLocker{ID: "X", Cells: 1, Carriers: []string{" "}}, "carriers"},
		{"long address", fleet.NewLocker{ID: "X", Cells: 1, Address: strings.Repeat("x", 301)}, "address"},
		{"newline in address", fleet.NewLocker{ID: "X", Cells: 1, Address: "a\nb"}, "address"},
		{"bad ID", fleet.NewLocker{ID: "a/b", Cells: 1}, "id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := r.Create(ctx, tt.n)
			require.Equal(t, tt.field, fieldOf(t, err), "%v", err)
		})
	}

	l, c, err := r.Create(ctx, fleet.NewLocker{ID: "L1", Model: "m3", Address: " Hauptstraße 1, Berlin ", TimeZone: "Europe/Berlin",
		Lat: ptr(52.52), Lon: ptr(13.405), Segments: []string{"berlin", "pilot", "berlin"}, Carriers: []string{"dhl", "hermes"}})
	require.NoError(t, err)
	require.Equal(t, "m3", l.Model)
	require.Equal(t, 3, l.Cells, "from the model's layout")
	require.Equal(t, "Hauptstraße 1, Berlin", l.Address)
	require.Equal(t, "Europe/Berlin", l.TimeZone)
	require.Equal(t, 52.52, *l.Lat)
	require.Equal(t, []string{"berlin", "pilot"}, l.Segments)
	require.Equal(t, []string{"dhl", "hermes"}, l.Carriers)
	require.Equal(t, fleet.Change{Entity: "locker", ID: "L1", Action: "create", After: l}, c)
	cells, err := r.Cells(ctx, "L1")
	require.NoError(t, err)
	require.Equal(t, []fleet.Cell{{"A01", "S", 1, 1, ""}, {"A02", "M", 1, 2, ""}, {"B01", "L", 2, 1, ""}}, cells)

	l2, _, err := r.Create(ctx, fleet.NewLocker{ID: "L2", Cells: 12})
	require.NoError(t, err)
	require.Equal(t, "", l2.Model)
	require.Equal(t, []string{}, l2.Segments)
	require.Nil(t, l2.Lat)
	cells, err = r.Cells(ctx, "L2")
	require.NoError(t, err)
	require.Equal(t, fleet.DefaultLayout(12), cells)
	all, err := r.AllCells(ctx)
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, cells, all["L2"])

	_, err = r.Cells(ctx, "nope")
	require.ErrorIs(t, err, fleet.ErrNotFound)

	// The JSON of a locker: lists are never null.
	b, err := json.Marshal(l2)
	require.NoError(t, err)
	require.Contains(t, string(b), `"segments":[],"carriers":[]`)
	require.NotContains(t, string(b), `"lat"`)
}

func TestUpdateLocker(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	k := &kicks{}
	r.SetConnections(k)
	_, _, err := r.CreateModel(ctx, fleet.NewModel{ID: "m3", Manufacturer: "M", Name: "Three", Layout: layout("A01:S A02:M B01:L")})
	require.NoError(t, err)
	_, _, err = r.CreateModel(ctx, fleet.NewModel{ID: "m1", Manufacturer: "M", Name: "One", Layout: layout("A01:XL")})
	require.NoError(t, err)
	before, _, err := r.Create(ctx, fleet.NewLocker{ID: "L1", Cells: 4, Address: "Old 1", TimeZone: "UTC",
		Lat: ptr(1.0), Lon: ptr(2.0), Segment: "north", Carriers: []string{"dhl"}})
	require.NoError(t, err)
	cellsOf := func() []fleet.Cell {
		cells, err := r.Cells(ctx, "L1")
		require.NoError(t, err)
		return cells
	}

	// Only what the patch names changes.
	var p fleet.LockerPatch
	require.NoError(t, json.Unmarshal([]byte(`{"address":"New 2","segments":["a","b"],"time_zone":null}`), &p))
	l, c, err := r.Update(ctx, "L1", p)
	require.NoError(t, err)
	require.Equal(t, "New 2", l.Address)
	require.Equal(t, []string{"a", "b"}, l.Segments)
	require.Equal(t, "", l.TimeZone)
	require.Equal(t, []string{"dhl"}, l.Carriers)
	require.Equal(t, 1.0, *l.Lat)
	require.Equal(t, 4, l.Cells)
	require.True(t, l.UpdatedAt.After(before.UpdatedAt) || l.UpdatedAt.Equal(before.UpdatedAt))
	require.Equal(t, fleet.Change{Entity: "locker", ID: "L1", Action: "update", Before: before, After: l}, c)

	for _, tt := range []struct{ patch, field string }{
		{`{"time_zone":"Europe/Nowhere"}`, "time_zone"},
		{`{"lat":91}`, "lat"},
		{`{"lat":null}`, "lat"}, // lat and lon go together
		{`{"model":"nope"}`, "model"},
		{`{"cells":null}`, "cells"},
		{`{"cells":0}`, "cells"},
		{`{"enabled":null}`, "enabled"},
		{`{"model":"m3","cells":5}`, "cells"},
		{`{"carriers":["a,b"]}`, "carriers"},
	} {
		var p fleet.LockerPatch
		require.NoError(t, json.Unmarshal([]byte(tt.patch), &p))
		_, _, err := r.Update(ctx, "L1", p)
		require.Equal(t, tt.field, fieldOf(t, err), "%s: %v", tt.patch, err)
	}
	_, _, err = r.Update(ctx, "nope", fleet.LockerPatch{Address: fleet.Value("x")})
	require.ErrorIs(t, err, fleet.ErrNotFound)
	got, err := r.Get(ctx, "L1")
	require.NoError(t, err)
	require.Equal(t, l, got, "refused patches changed nothing")

	// Coordinates clear together.
	l, _, err = r.Update(ctx, "L1", fleet.LockerPatch{Lat: fleet.Opt[float64]{Set: true, Null: true}, Lon: fleet.Opt[float64]{Set: true, Null: true}})
	require.NoError(t, err)
	require.Nil(t, l.Lat)
	require.Nil(t, l.Lon)

	// A model with a layout gives its cells; clearing the model keeps them;
	// a cell count gives columns of 10.
	l, _, err = r.Update(ctx, "L1", fleet.LockerPatch{Model: fleet.Value("m3")})
	require.NoError(t, err)
	require.Equal(t, 3, l.Cells)
	require.Equal(t, []fleet.Cell{{"A01", "S", 1, 1, ""}, {"A02", "M", 1, 2, ""}, {"B01", "L", 2, 1, ""}}, cellsOf())
	l, _, err = r.Update(ctx, "L1", fleet.LockerPatch{Model: fleet.Opt[string]{Set: true, Null: true}})
	require.NoError(t, err)
	require.Equal(t, "", l.Model)
	require.Equal(t, 3, l.Cells)
	require.Equal(t, "L", cellsOf()[2].Size, "the cells stay")
	l, _, err = r.Update(ctx, "L1", fleet.LockerPatch{Cells: fleet.Value(12)})
	require.NoError(t, err)
	require.Equal(t, 12, l.Cells)
	require.Equal(t, fleet.DefaultLayout(12), cellsOf())
	l, _, err = r.Update(ctx, "L1", fleet.LockerPatch{Model: fleet.Value("m1"), Cells: fleet.Value(1)})
	require.NoError(t, err)
	require.Equal(t, []fleet.Cell{{"A01", "XL", 1, 1, ""}}, cellsOf())

	// Disabling revokes the certificates and closes the connection.
	csr, _, err := pki.NewKeyAndCSR("L1")
	require.NoError(t, err)
	cert, err := r.IssueCertificate(ctx, "L1", csr)
	require.NoError(t, err)
	l, _, err = r.Update(ctx, "L1", fleet.LockerPatch{Enabled: fleet.Value(false)})
	require.NoError(t, err)
	require.False(t, l.Enabled)
	require.True(t, r.Revoked(cert.Serial))
	require.Equal(t, []string{"L1"}, k.ids)
	require.ErrorIs(t, r.Authorize("L1"), fleet.ErrDisabled)
	_, err = r.IssueCertificate(ctx, "L1", csr)
	require.ErrorIs(t, err, fleet.ErrDisabled)
	l, _, err = r.Update(ctx, "L1", fleet.LockerPatch{Enabled: fleet.Value(true)})
	require.NoError(t, err)
	require.True(t, l.Enabled)
	require.NoError(t, r.Authorize("L1"))
	require.NoError(t, r.Load(ctx))
	require.True(t, r.Revoked(cert.Serial), "re-enabling does not bring old certificates back")
}

func TestDeleteLocker(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	k := &kicks{}
	r.SetConnections(k)
	changes := &changeLog{}
	r.OnChange(changes.record)
	l, _, err := r.Create(ctx, fleet.NewLocker{ID: "L1", Cells: 4})
	require.NoError(t, err)
	var serials []string
	for range 2 {
		csr, _, err := pki.NewKeyAndCSR("L1")
		require.NoError(t, err)
		c, err := r.IssueCertificate(ctx, "L1", csr)
		require.NoError(t, err)
		serials = append(serials, c.Serial)
	}
	_, err = r.CreateEnrollToken(ctx, "L1", 0)
	require.NoError(t, err)
	changes.take()

	n, c, err := r.Delete(ctx, "L1")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, fleet.Change{Entity: "locker", ID: "L1", Action: "delete", Before: l}, c)
	require.Equal(t, []fleet.Change{c}, changes.take())
	require.Equal(t, []string{"L1"}, k.ids, "the live connection is closed")
	require.ErrorIs(t, r.Authorize("L1"), fleet.ErrNotFound)
	_, err = r.Get(ctx, "L1")
	require.ErrorIs(t, err, fleet.ErrNotFound)
	_, err = r.Cells(ctx, "L1")
	require.ErrorIs(t, err, fleet.ErrNotFound)
	_, _, err = r.Delete(ctx, "L1")
	require.ErrorIs(t, err, fleet.ErrNotFound)

	// The certificates stay revoked, also for a new locker of the same ID.
	_, _, err = r.Create(ctx, fleet.NewLocker{ID: "L1", Cells: 4})
	require.NoError(t, err)
	require.NoError(t, r.Load(ctx))
	for _, s := range serials {
		require.True(t, r.Revoked(s))
	}
}

func TestListLockers(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	_, _, err := r.CreateModel(ctx, fleet.NewModel{ID: "m1", Manufacturer: "M", Name: "One", Layout: layout("A01:M")})
	require.NoError(t, err)
	for _, n := range []fleet.NewLocker{
		{ID: "B-2", Cells: 2, Address: "Hauptstraße 5, Berlin", Segments: []string{"berlin", "pilot"}, Carriers: []string{"dhl"}},
		{ID: "B-1", Model: "m1", Address: "Unter den Linden 1, BERLIN", Segments: []string{"berlin"}, Carriers: []string{"dhl", "ups"}},
		{ID: "M-1", Cells: 2, Address: "Marienplatz 1, München", Segments: []string{"munich", "pilot"}},
		{ID: "X_1", Cells: 2, Address: "100% Straße"},
	} {
		_, _, err := r.Create(ctx, n)
		require.NoError(t, err)
	}
	r.Connected("B-2", time.Now())
	r.Connected("M-1", time.Now())

	ids := func(f fleet.LockerFilter) ([]string, int) {
		t.Helper()
		ls, total, err := r.List(ctx, f)
		require.NoError(t, err)
		out := []string{}
		for _, l := range ls {
			out = append(out, l.ID)
		}
		return out, total
	}
	for _, tt := range []struct {
		name  string
		f     fleet.LockerFilter
		want  []string
		total int
	}{
		{"all", fleet.LockerFilter{}, []string{"B-1", "B-2", "M-1", "X_1"}, 4},
		{"segment", fleet.LockerFilter{Segment: "pilot"}, []string{"B-2", "M-1"}, 2},
		{"model", fleet.LockerFilter{Model: "m1"}, []string{"B-1"}, 1},
		{"carrier", fleet.LockerFilter{Carrier: "dhl"}, []string{"B-1", "B-2"}, 2},
		{"online", fleet.LockerFilter{Status: "online"}, []string{"B-2", "M-1"}, 2},
		{"offline", fleet.LockerFilter{Status: "offline"}, []string{"B-1", "X_1"}, 2},
		{"address in any case", fleet.LockerFilter{Query: "berlin"}, []string{"B-1", "B-2"}, 2},
		{"ID in any case", fleet.LockerFilter{Query: "m-"}, []string{"M-1"}, 1},
		{"% is literal", fleet.LockerFilter{Query: "0%"}, []string{"X_1"}, 1},
		{"_ is literal", fleet.LockerFilter{Query: "_"}, []string{"X_1"}, 1},
		{"combined", fleet.LockerFilter{Segment: "pilot", Status: "online", Query: "münchen"}, []string{"M-1"}, 1},
		{"page", fleet.LockerFilter{Limit: 2, Offset: 1}, []string{"B-2", "M-1"}, 4},
		{"past the end", fleet.LockerFilter{Limit: 2, Offset: 10}, []string{}, 4},
		{"nothing", fleet.LockerFilter{Segment: "nowhere"}, []string{}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, total := ids(tt.f)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.total, total)
		})
	}
	ls, _, err := r.List(ctx, fleet.LockerFilter{Status: "online", Limit: 1})
	require.NoError(t, err)
	require.True(t, ls[0].Online)
	for _, f := range []fleet.LockerFilter{{Status: "gone"}, {Limit: -1}, {Limit: 10001}, {Offset: -1}} {
		_, _, err := r.List(ctx, f)
		require.ErrorIs(t, err, fleet.ErrInvalid, "%+v", f)
	}
}

func TestImportCSV(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	changes := &changeLog{}
	r.OnChange(changes.record)
	_, _, err := r.CreateModel(ctx, fleet.NewModel{ID: "m3", Manufacturer: "M", Name: "Three", Layout: layout("A01:S A02:M B01:L")})
	require.NoError(t, err)
	_, _, err = r.Create(ctx, fleet.NewLocker{ID: "OLD", Cells: 1})
	require.NoError(t, err)
	changes.take()

	header := "id,model,cells,address,time_zone,lat,lon,segments,carriers\n"
	good := "\ufeff" + header +
		"C-1,m3,,\"Hauptstraße 1, Berlin\",Europe/Berlin,52.52,13.405,berlin|pilot,dhl|ups\n" +
		"C-2,,12,,,,,,\n" +
		"\n" + // blank lines are skipped
		"C-3,,2,\"The \"\"Two\"\" Tower\",UTC,-33.9,151.2,sydney,\n"

	for _, tt := range []struct {
		name, csv string
		line      int
		column    string
		exists    bool
	}{
		{"bad time zone", header + "A,,1,,UTC,,,,\nB,,1,,Mars/Base,,,,\n", 3, "time_zone", false},
		{"lat 91", header + "A,,1,,,91,0,,\n", 2, "lat", false},
		{"lat not a number", header + "A,,1,,,north,0,,\n", 2, "lat", false},
		{"NaN", header + "A,,1,,,NaN,0,,\n", 2, "lat", false},
		{"cells not a number", header + "A,,ten,,,,,,\n", 2, "cells", false},
		{"no cells", header + "A,,,,,,,,\n", 2, "cells", false},
		{"unknown model", header + "A,,1,,,,,,\nB,nope,,,,,,,\n", 3, "model", false},
		{"cells against the model", header + "A,m3,4,,,,,,\n", 2, "cells", false},
		{"bad ID", header + "a/b,,1,,,,,,\n", 2, "id", false},
		{"ID twice", header + "A,,1,,,,,,\nB,,1,,,,,,\nA,,2,,,,,,\n", 4, "id", false},
		{"already registered", header + "A,,1,,,,,,\nOLD,,1,,,,,,\n", 3, "id", true},
		{"segment with a comma", header + "A,,1,,,,,\"a,b\",\n", 2, "segments", false},
		{"too few fields", header + "A,,1\n", 2, "", false},
		{"unknown column", "id,colour\nA,red\n", 1, "", false},
		{"column twice", "id,cells,cells\nA,1,1\n", 1, "", false},
		{"no id column", "cells\n1\n", 1, "", false},
		{"header only", header, 2, "", false},
		{"empty", "", 1, "", false},
		{"bad quoting", header + "A,,1,\"unterminated,,,,,\n", 2, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Import(ctx, strings.NewReader(tt.csv))
			var ie *fleet.ImportError
			require.ErrorAs(t, err, &ie, "%v", err)
			require.Equal(t, tt.line, ie.Line, "%v", err)
			require.Equal(t, tt.column, ie.Column, "%v", err)
			if tt.exists {
				require.ErrorIs(t, err, fleet.ErrExists)
			} else {
				require.ErrorIs(t, err, fleet.ErrInvalid)
			}
			require.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf("line %d", tt.line)), err.Error())
			_, total, err := r.List(ctx, fleet.LockerFilter{})
			require.NoError(t, err)
			require.Equal(t, 1, total, "nothing was imported")
		})
	}
	var ie *fleet.ImportError
	_, err = r.Import(ctx, strings.NewReader(header+"B,,1,,Mars/Base,,,,\n"))
	require.ErrorAs(t, err, &ie)
	require.Equal(t, `line 2, column time_zone: "Mars/Base" is not an IANA time zone name such as Europe/Berlin`, err.Error())

	var rows strings.Builder
	rows.WriteString("id,cells\n")
	for i := range fleet.MaxImportRows + 1 {
		fmt.Fprintf(&rows, "T-%d,1\n", i)
	}
	_, err = r.Import(ctx, strings.NewReader(rows.String()))
	require.ErrorAs(t, err, &ie)
	require.Equal(t, fleet.MaxImportRows+2, ie.Line)
	require.Empty(t, changes.take())

	created, err := r.Import(ctx, strings.NewReader(good))
	require.NoError(t, err)
	require.Len(t, created, 3)
	require.Len(t, changes.take(), 3)
	c1, err := r.Get(ctx, "C-1")
	require.NoError(t, err)
	require.Equal(t, fleet.Change{Entity: "locker", ID: "C-1", Action: "create", After: c1}, created[0])
	require.Equal(t, "m3", c1.Model)
	require.Equal(t, 3, c1.Cells)
	require.Equal(t, "Hauptstraße 1, Berlin", c1.Address)
	require.Equal(t, []string{"berlin", "pilot"}, c1.Segments)
	require.Equal(t, []string{"dhl", "ups"}, c1.Carriers)
	require.Equal(t, 13.405, *c1.Lon)
	c3, err := r.Get(ctx, "C-3")
	require.NoError(t, err)
	require.Equal(t, `The "Two" Tower`, c3.Address)
	cells, err := r.Cells(ctx, "C-2")
	require.NoError(t, err)
	require.Equal(t, fleet.DefaultLayout(12), cells)
	require.NoError(t, r.Authorize("C-2"), "imported lockers may connect")
	require.Equal(t, 4, r.Count())
}

// TestMigrationKeepsExistingLockers registers lockers on the schema before
// models and checks what 002 makes of them.
func TestMigrationKeepsExistingLockers(t *testing.T) {
	full := fleet.Migrations()
	sql, err := fs.ReadFile(full.FS, "001_registry.sql")
	require.NoError(t, err)
	pool := pgtest.Pool(t, pg.Migrations{Package: "fleet", FS: fstest.MapFS{"001_registry.sql": {Data: sql}}})
	ctx := context.Background()
	_, err = pool.Exec(ctx, `INSERT INTO fleet_lockers (id, model, cells, segment) VALUES
		('L1', 'KX-12', 12, 'north'), ('L2', '', 3, ''), ('L3', 'KX-12', 261, 'south')`)
	require.NoError(t, err)
	_, err = pg.Migrate(ctx, pool, audit.Migrations(), full)
	require.NoError(t, err)

	ca, err := pki.LoadOrCreateCA(t.TempDir())
	require.NoError(t, err)
	r := fleet.NewRegistry(pool, ca, discard())
	require.NoError(t, r.Load(ctx))
	l1, err := r.Get(ctx, "L1")
	require.NoError(t, err)
	require.Equal(t, "KX-12", l1.Model)
	require.Equal(t, []string{"north"}, l1.Segments)
	require.Equal(t, []string{}, l1.Carriers)
	l2, err := r.Get(ctx, "L2")
	require.NoError(t, err)
	require.Equal(t, "", l2.Model)
	require.Equal(t, []string{}, l2.Segments)
	m, err := r.GetModel(ctx, "KX-12")
	require.NoError(t, err, "the free-text model became a model")
	require.Empty(t, m.Layout)
	for id, n := range map[string]int{"L1": 12, "L2": 3, "L3": 261} {
		cells, err := r.Cells(ctx, id)
		require.NoError(t, err)
		require.Equal(t, fleet.DefaultLayout(n), cells, id)
	}
	// The carried-over model has no layout: its lockers keep their count.
	l1, _, err = r.Update(ctx, "L1", fleet.LockerPatch{Address: fleet.Value("Somewhere 1")})
	require.NoError(t, err)
	require.Equal(t, 12, l1.Cells)
	_, err = r.DeleteModel(ctx, "KX-12")
	require.ErrorIs(t, err, fleet.ErrInUse)
}

// TestNoCertificateForAGoneLocker: the certificate is recorded only while the
// locker's row is there and enabled, whatever memory said a moment before (a
// delete or disable committing meanwhile must not miss it).
func TestNoCertificateForAGoneLocker(t *testing.T) {
	pool := pgtest.Pool(t, audit.Migrations(), fleet.Migrations())
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	require.NoError(t, err)
	r := fleet.NewRegistry(pool, ca, discard())
	ctx := context.Background()
	require.NoError(t, r.Load(ctx))
	for _, id := range []string{"L1", "L2"} {
		_, _, err = r.Create(ctx, fleet.NewLocker{ID: id, Cells: 1})
		require.NoError(t, err)
	}
	_, err = pool.Exec(ctx, `DELETE FROM fleet_lockers WHERE id = 'L1'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE fleet_lockers SET enabled = false WHERE id = 'L2'`)
	require.NoError(t, err)
	for _, id := range []string{"L1", "L2"} {
		csr, _, err := pki.NewKeyAndCSR(id)
		require.NoError(t, err)
		_, err = r.IssueCertificate(ctx, id, csr)
		require.ErrorIs(t, err, fleet.ErrNotFound, id)
	}
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM fleet_certificates`).Scan(&n))
	require.Zero(t, n)
}
