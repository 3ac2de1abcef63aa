package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/lockerhub/lockerhub/apiclient"
)

// The fleet model's commands: lockers (beyond add/list/show) and models.

// lockerFlags are the descriptive flags of locker add and locker update.
type lockerFlags struct {
	fs                                 *flag.FlagSet
	model, address, timeZone, lat, lon *string
	segments, carriers                 *string
	cells                              *int
}

func registerLockerFlags(fs *flag.FlagSet) *lockerFlags {
	return &lockerFlags{
		fs:       fs,
		model:    fs.String("model", "", "locker `model` ID (hubctl model list); its layout gives the cells"),
		cells:    fs.Int("cells", 0, "number of cells (`N`) in columns of 10 (A01–A10, B01–B10, …), size M"),
		address:  fs.String("address", "", "postal `address`"),
		timeZone: fs.String("time-zone", "", "IANA time `zone`, e.g. Europe/Berlin"),
		lat:      fs.String("lat", "", "latitude in `degrees` (-90 to 90), with --lon"),
		lon:      fs.String("lon", "", "longitude in `degrees` (-180 to 180), with --lat"),
		segments: fs.String("segments", "", "network `segments`, comma-separated"),
		carriers: fs.String("carriers", "", "`carriers` allowed to use the locker, comma-separated"),
	}
}

// set reports whether a flag was given on the command line.
func (f *lockerFlags) set(name string) bool {
	found := false
	f.fs.Visit(func(fl *flag.Flag) { found = found || fl.Name == name })
	return found
}

// commaList splits "a, b" into ["a", "b"]; "" is an empty list.
func commaList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseDegrees(cmd, name, s string) (*float64, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, usagef("%s: --%s %q is not a number", cmd, name, s)
	}
	return &v, nil
}

func (c *cli) lockerAdd(ctx context.Context, id, segment string, f *lockerFlags) error {
	if err := checkID(id); err != nil {
		return err
	}
	if *f.cells < 1 && *f.model == "" {
		return usagef("locker add: --cells N is required without --model, and must be at least 1")
	}
	n := apiclient.NewLocker{ID: id, Model: *f.model, Cells: *f.cells, Address: *f.address, TimeZone: *f.timeZone, Segment: segment}
	var err error
	if n.Lat, err = parseDegrees("locker add", "lat", *f.lat); err != nil {
		return err
	}
	if n.Lon, err = parseDegrees("locker add", "lon", *f.lon); err != nil {
		return err
	}
	if f.set("segments") {
		n.Segments = commaList(*f.segments)
	}
	if f.set("carriers") {
		n.Carriers = commaList(*f.carriers)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	l, err := api.CreateLocker(ctx, n)
	if err != nil {
		return fmt.Errorf("locker add %s: %w", id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Locker %s registered.\n", l.ID)
	return writeLocker(c.stdout, l, nil, c.loc)
}

func (c *cli) lockerUpdate(ctx context.Context, id string, f *lockerFlags, enable, disable bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	patch := map[string]any{}
	orNull := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	if f.set("model") {
		patch["model"] = orNull(*f.model)
	}
	if f.set("cells") {
		patch["cells"] = *f.cells
	}
	if f.set("address") {
		patch["address"] = *f.address
	}
	if f.set("time-zone") {
		patch["time_zone"] = orNull(*f.timeZone)
	}
	for name, val := range map[string]string{"lat": *f.lat, "lon": *f.lon} {
		if !f.set(name) {
			continue
		}
		v, err := parseDegrees("locker update", name, val)
		if err != nil {
			return err
		}
		if v == nil {
			patch[name] = nil // clears the coordinates
		} else {
			patch[name] = *v
		}
	}
	if f.set("segments") {
		patch["segments"] = commaList(*f.segments)
	}
	if f.set("carriers") {
		patch["carriers"] = commaList(*f.carriers)
	}
	switch {
	case enable && disable:
		return usagef("locker update: --enable or --disable, not both")
	case enable:
		patch["enabled"] = true
	case disable:
		patch["enabled"] = false
	}
	if len(patch) == 0 {
		return usagef("locker update: nothing to change (see hubctl locker update --help)")
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	l, err := api.UpdateLocker(ctx, id, patch)
	if err != nil {
		return fmt.Errorf("locker update %s: %w", id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Locker %s updated.\n", l.ID)
	return writeLocker(c.stdout, l, nil, c.loc)
}

func (c *cli) lockerList(ctx context.Context, f apiclient.LockerFilter) error {
	switch f.Status {
	case "", "online", "offline":
	default:
		return usagef("locker list: --status is online or offline, not %q", f.Status)
	}
	if f.Limit < 0 || f.Offset < 0 {
		return usagef("locker list: --limit and --offset must not be negative")
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	page, err := api.ListLockers(ctx, f)
	if err != nil {
		return fmt.Errorf("locker list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	filtered := f.Segment != "" || f.Model != "" || f.Carrier != "" || f.Status != "" || f.Query != ""
	switch {
	case len(page.Lockers) > 0:
	case page.Total == 0 && !filtered:
		fmt.Fprintln(c.stderr, "No lockers registered yet: add one with `hubctl locker add ID --cells N`.")
		return nil
	case page.Total == 0:
		fmt.Fprintln(c.stderr, "No locker matches.")
		return nil
	default:
		fmt.Fprintf(c.stderr, "No lockers from offset %d on (%d in all).\n", page.Offset, page.Total)
		return nil
	}
	if err := writeLockerTable(c.stdout, page.Lockers, c.loc); err != nil {
		return err
	}
	if len(page.Lockers) < page.Total {
		fmt.Fprintf(c.stderr, "Lockers %d–%d of %d; see more with --offset %d (--limit up to 10000).\n",
			page.Offset+1, page.Offset+len(page.Lockers), page.Total, page.Offset+len(page.Lockers))
	}
	return nil
}

func (c *cli) lockerShow(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	l, err := api.Locker(ctx, id)
	if err != nil {
		return fmt.Errorf("locker show %s: %w", id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	cells, err := api.LockerCells(ctx, id)
	if err != nil {
		return fmt.Errorf("locker show %s: cells: %w", id, err)
	}
	return writeLocker(c.stdout, l, cells, c.loc)
}

func (c *cli) lockerDelete(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	n, err := api.DeleteLocker(ctx, id)
	if err != nil {
		return fmt.Errorf("locker delete %s: %w", id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Locker %s deleted. %s\n", id, revokedMessage(id, n))
	return nil
}

func (c *cli) lockerImport(ctx context.Context, file string) error {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(c.stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("locker import: %w", err)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	n, err := api.ImportLockers(ctx, data)
	if err != nil {
		return fmt.Errorf("locker import %s: %w (nothing was imported)", file, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if n == 1 {
		fmt.Fprintln(c.stdout, "Imported 1 locker.")
	} else {
		fmt.Fprintf(c.stdout, "Imported %d lockers.\n", n)
	}
	return nil
}

// parseLayout reads the compact layout notation "A:SSMMLL,B:MMMM": per
// column its letters, a colon and the sizes of its cells from row 01 down
// (S, M, L or XL).
func parseLayout(s string) ([]apiclient.Cell, error) {
	var cells []apiclient.Cell
	for _, part := range strings.Split(s, ",") {
		col, sizes, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || col == "" || len(col) > 2 || strings.Trim(col, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return nil, fmt.Errorf("%q is not COLUMN:SIZES such as A:SSMMLL (column letters A–Z)", part)
		}
		row := 0
		for i := 0; i < len(sizes); i++ {
			size := sizes[i : i+1]
			switch {
			case strings.HasPrefix(sizes[i:], "XL"):
				size = "XL"
				i++
			case size != "S" && size != "M" && size != "L":
				return nil, fmt.Errorf("column %s: %q is not a size (S, M, L, XL)", col, sizes[i:])
			}
			row++
			if row > 99 {
				return nil, fmt.Errorf("column %s: more than 99 cells", col)
			}
			cells = append(cells, apiclient.Cell{Name: fmt.Sprintf("%s%02d", col, row), Size: size})
		}
		if row == 0 {
			return nil, fmt.Errorf("column %s has no cells", col)
		}
	}
	return cells, nil
}

func (c *cli) modelAdd(ctx context.Context, id, manufacturer, name, layout, caps string) error {
	if layout == "" {
		return usagef("model add: --layout is required, e.g. --layout A:SSMMLL,B:MMMM")
	}
	cells, err := parseLayout(layout)
	if err != nil {
		return usagef("model add: --layout: %v", err)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	m, err := api.CreateModel(ctx, apiclient.NewModel{ID: id, Manufacturer: manufacturer, Name: name, Layout: cells, Capabilities: commaList(caps)})
	if err != nil {
		return fmt.Errorf("model add %s: %w", id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	fmt.Fprintf(c.stdout, "Model %s added.\n", m.ID)
	return writeModel(c.stdout, m, c.loc)
}

func (c *cli) modelList(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	ms, err := api.Models(ctx)
	if err != nil {
		return fmt.Errorf("model list: %w", err)
	}
	if c.g.json {
		return c.printRaw()
	}
	if len(ms) == 0 {
		fmt.Fprintln(c.stderr, "No models yet: add one with `hubctl model add ID --manufacturer M --name N --layout A:SSMMLL`.")
		return nil
	}
	return writeModelTable(c.stdout, ms)
}

func (c *cli) modelShow(ctx context.Context, id string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	m, err := api.Model(ctx, id)
	if err != nil {
		return fmt.Errorf("model show %s: %w", id, err)
	}
	if c.g.json {
		return c.printRaw()
	}
	return writeModel(c.stdout, m, c.loc)
}

func (c *cli) modelDelete(ctx context.Context, id string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	if err := api.DeleteModel(ctx, id); err != nil {
		return fmt.Errorf("model delete %s: %w", id, err)
	}
	if c.g.json {
		return nil
	}
	fmt.Fprintf(c.stdout, "Model %s deleted.\n", id)
	return nil
}
