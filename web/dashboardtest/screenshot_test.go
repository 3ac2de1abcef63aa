package dashboardtest_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
)

var updateDocs = flag.Bool("update-docs", false, "write the README's screenshot (docs/screenshot-fleet.png) from TestFleetScreenshot")

// TestFleetScreenshot builds a small, lifelike network (a locker model with
// four cell sizes, addresses, segments, carriers; lockers online, offline, on
// battery, with open doors and parcels in cells) and takes the fleet page and
// a locker page as screenshots. With -update-docs the fleet page becomes
// docs/screenshot-fleet.png.
func TestFleetScreenshot(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()

	var layout []map[string]any
	for i, name := range lockersim.CellNames(20) {
		size := []string{"S", "S", "S", "S", "M", "M", "M", "M", "L", "L", "M", "M", "M", "M", "M", "M", "L", "L", "L", "XL"}[i]
		layout = append(layout, map[string]any{"name": name, "size": size})
	}
	require.NoError(t, h.Admin.JSON(ctx, "POST", "/api/v1/models", map[string]any{
		"id": "pb-20", "manufacturer": "Boxwerk", "name": "ParcelBox 20", "layout": layout,
		"capabilities": []string{"screen", "keypad", "scanner"},
	}, nil))

	streets := []string{"Torstraße 112, Berlin", "Kastanienallee 7, Berlin", "Sonnenallee 210, Berlin", "Karl-Marx-Straße 58, Berlin",
		"Frankfurter Allee 91, Berlin", "Schönhauser Allee 36, Berlin", "Hermannstraße 140, Berlin", "Müllerstraße 15, Berlin",
		"Osterstraße 80, Hamburg", "Mühlenkamp 31, Hamburg", "Ottenser Hauptstraße 6, Hamburg", "Eppendorfer Weg 190, Hamburg"}
	var csv bytes.Buffer
	csv.WriteString("id,model,address,time_zone,lat,lon,segments,carriers\n")
	for i, st := range streets {
		seg, carriers := "berlin-north", "dhl|dpd"
		switch {
		case i >= 8:
			seg, carriers = "hamburg", "dhl|gls|ups"
		case i%2 == 1:
			seg, carriers = "berlin-south", "dhl|ups"
		}
		fmt.Fprintf(&csv, "%s,pb-20,%q,Europe/Berlin,52.5%d,13.4%d,%s,%s\n", lockersim.LockerID("PB-", i+1, 12), st, i, i, seg, carriers)
	}
	req, err := http.NewRequest("POST", h.HTTPURL+"/api/v1/lockers/import", &csv)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Less(t, resp.StatusCode, 300, "import")

	s := sim(t, h, "PB-", "", 12)
	// Parcels in about half the cells, a few doors open, two lockers on
	// battery, two offline.
	for i, l := range s.Lockers() {
		for j, cell := range lockersim.CellNames(20) {
			if (i*7+j*3)%5 < 2 {
				continue
			}
			require.NoError(t, l.OpenDoor(cell, "service:loader"))
			require.NoError(t, l.SetOccupied(cell, true))
			require.NoError(t, l.CloseDoor(cell))
		}
	}
	require.NoError(t, s.Locker("PB-00003").OpenDoor("B04", "code:p-5512"))
	require.NoError(t, s.Locker("PB-00006").OpenDoor("A02", ""))
	require.NoError(t, s.Locker("PB-00006").OpenDoor("A07", "command:c-81"))
	require.NoError(t, s.Locker("PB-00009").OpenDoor("B10", "service:mia"))
	require.NoError(t, s.Locker("PB-00004").SetMains(false))
	require.NoError(t, s.Locker("PB-00011").SetMains(false))
	hubtest.Eventually(t, 10*time.Second, "every message acknowledged", func() bool {
		for _, l := range s.Lockers() {
			if l.View(false).Queued > 0 {
				return false
			}
		}
		return true
	})
	s.Locker("PB-00007").GoOffline(time.Hour)
	s.Locker("PB-00012").GoOffline(time.Hour)

	b := newBrowser(t, h, 1440, 900)
	b.login("admin", h.AdminPassword)
	b.waitJS("the scene is on the page", 15*time.Second, `(() => {
		const t = (id) => (document.querySelector('[data-locker="' + id + '"]') || {}).innerText || "";
		return t("PB-00006").includes("2 open") && t("PB-00011").includes("On battery") && t("PB-00012").includes("Offline")
			&& document.querySelector('#sum-online').innerText === "10" })()`)
	time.Sleep(1500 * time.Millisecond) // let the row highlights fade
	path := b.screenshot("fleet-overview")

	b.open("#/lockers/PB-00006")
	b.waitJS("locker page", 10*time.Second, `(document.querySelector('[data-cell="A07"]') || {innerText: ""}).innerText.includes("Door open")`)
	b.waitJS("events listed", 5*time.Second, `document.querySelectorAll('#events [data-event]').length > 3`)
	time.Sleep(500 * time.Millisecond)
	b.screenshot("locker-page")

	if *updateDocs {
		require.NotEmpty(t, path)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		dst := filepath.Join("..", "..", "docs", "screenshot-fleet.png")
		require.NoError(t, os.WriteFile(dst, data, 0o644))
		t.Logf("wrote %s", dst)
	}
}
