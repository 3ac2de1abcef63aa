package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
)

// TestCarrierShares: carriers divide the network by whole lockers, segments
// and quotas in a shared locker. Each carrier's partner sees only its
// lockers; reservations over a quota are refused with 409 carrier_quota
// although cells are free (two at once for the last quota cell: one wins);
// carriers without a quota cannot take the cells kept for quotas; the
// availability and usage answers count what each carrier may still take.
func TestCarrierShares(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	startLockers(t, h, "CS", 3, func(c *lockersim.Config) { c.Cells = 6 }) // segment north, 6 M cells each
	shared := "CS00001"
	_, err := h.Admin.UpdateLocker(ctx, shared, map[string]any{"lat": 52.52, "lon": 13.41})
	require.NoError(t, err)

	for _, id := range []string{"dhl", "ups", "gls"} {
		_, err := h.Admin.CreateCarrier(ctx, apiclient.NewCarrier{ID: id, Name: id + " Ltd"})
		require.NoError(t, err)
	}
	_, err = h.Admin.CreateCarrier(ctx, apiclient.NewCarrier{ID: "dhl"})
	require.True(t, apiclient.IsCode(err, "exists"), "%v", err)

	partner := func(carrier string) *apiclient.Client {
		_, tok, err := h.App.Access.CreateClient(ctx, carrier+"-shop", carrier, []string{access.ScopeLockersRead, access.ScopeParcelsWrite})
		require.NoError(t, err)
		return apiclient.New(h.HTTPURL, tok)
	}
	dhl, ups, gls := partner("dhl"), partner("ups"), partner("gls")
	lockersOf := func(c *apiclient.Client) []string {
		var out struct {
			Lockers []struct{ ID string } `json:"lockers"`
		}
		require.NoError(t, c.JSON(ctx, "GET", "/api/v1/lockers", nil, &out))
		ids := []string{}
		for _, l := range out.Lockers {
			ids = append(ids, l.ID)
		}
		sort.Strings(ids)
		return ids
	}

	// Whole locker, segment, quota.
	_, err = h.Admin.AssignCarrier(ctx, "ups", "lockers", shared)
	require.NoError(t, err)
	d, err := h.Admin.AssignCarrier(ctx, "gls", "segments", "north")
	require.NoError(t, err)
	require.Equal(t, []string{"north"}, d.Segments)
	d, err = h.Admin.SetCarrierQuotas(ctx, "dhl", shared, map[string]int{"M": 2})
	require.NoError(t, err)
	require.Equal(t, []apiclient.CarrierQuota{{Carrier: "dhl", Locker: shared, Size: "M", Cells: 2}}, d.Quotas)
	require.Equal(t, []string{shared}, lockersOf(ups), "a whole locker")
	require.Equal(t, []string{"CS00001", "CS00002", "CS00003"}, lockersOf(gls), "every locker of the segment")
	require.Equal(t, []string{shared}, lockersOf(dhl), "a quota gives the locker")
	l, err := h.Admin.Locker(ctx, shared)
	require.NoError(t, err)
	require.Equal(t, []string{"ups"}, l.Carriers)
	require.Equal(t, []string{"dhl", "gls", "ups"}, l.CarrierAccess)
	_, err = dhl.Locker(ctx, "CS00002")
	require.True(t, apiclient.IsCode(err, "not_found"), "not dhl's: %v", err)
	// A locker that joins the segment later is gls's too; one that leaves is not.
	_, err = h.Admin.UpdateLocker(ctx, "CS00003", map[string]any{"segments": []string{"south"}})
	require.NoError(t, err)
	require.Equal(t, []string{"CS00001", "CS00002"}, lockersOf(gls))
	// The quotas of a locker cannot add up to more cells than it has.
	_, err = h.Admin.SetCarrierQuotas(ctx, "gls", shared, map[string]int{"M": 5})
	require.True(t, apiclient.IsCode(err, "invalid"), "%v", err)
	require.Contains(t, err.Error(), "at most 4 left for gls")
	// A carrier that lockers name cannot be deleted.
	err = h.Admin.DeleteCarrier(ctx, "ups")
	require.True(t, apiclient.IsCode(err, "in_use"), "%v", err)

	n := 0
	reserve := func(c *apiclient.Client) (apiclient.Parcel, error) {
		n++
		return c.CreateParcel(ctx, apiclient.NewParcel{Locker: shared, Size: "M", Recipient: apiclient.Recipient{Phone: fmt.Sprintf("+49170000%04d", n)}}, "")
	}
	type avail struct {
		Lockers []struct {
			ID        string         `json:"id"`
			FreeCells map[string]int `json:"free_cells"`
		} `json:"lockers"`
	}
	freeM := func(c *apiclient.Client) int {
		var a avail
		require.NoError(t, c.JSON(ctx, "GET", "/api/v1/availability?lat=52.52&lon=13.41&size=M", nil, &a))
		for _, l := range a.Lockers {
			if l.ID == shared {
				return l.FreeCells["M"]
			}
		}
		return 0
	}
	hubtest.Eventually(t, 10*time.Second, "6 free M cells", func() bool { return freeM(apiclient.New(h.HTTPURL, h.AdminToken)) == 6 })
	require.Equal(t, 2, freeM(dhl), "dhl: its quota")
	require.Equal(t, 4, freeM(ups), "ups: what the quota leaves")

	// dhl's first parcel, then two at once for the last cell of its quota.
	_, err = reserve(dhl)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = dhl.CreateParcel(ctx, apiclient.NewParcel{Locker: shared, Size: "M", Recipient: apiclient.Recipient{Phone: fmt.Sprintf("+4917100000%d", i)}}, "")
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			require.True(t, apiclient.IsCode(err, "carrier_quota"), "%v", err)
			var e *apiclient.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, http.StatusConflict, e.Status)
		}
	}
	require.Equal(t, 1, won, "one of two reservations for the last quota cell wins: %v", errs)
	_, err = reserve(dhl)
	require.True(t, apiclient.IsCode(err, "carrier_quota"), "over quota although 4 cells are free: %v", err)
	require.Contains(t, err.Error(), "holds 2 of its 2 cells of size M")
	require.Equal(t, 0, freeM(dhl))
	// The fleet overview counts the same way for a partner of a carrier.
	overviewM := func(c *apiclient.Client) (row, summary int) {
		var ov struct {
			Summary struct {
				FreeCells map[string]int `json:"free_cells"`
			} `json:"summary"`
			Rows []struct {
				ID        string         `json:"id"`
				FreeCells map[string]int `json:"free_cells"`
			} `json:"rows"`
		}
		require.NoError(t, c.JSON(ctx, "GET", "/api/v1/fleet/overview", nil, &ov))
		for _, r := range ov.Rows {
			if r.ID == shared {
				row = r.FreeCells["M"]
			}
		}
		return row, ov.Summary.FreeCells["M"]
	}
	row, sum := overviewM(dhl)
	require.Equal(t, [2]int{0, 0}, [2]int{row, sum}, "dhl's quota is used up")
	row, _ = overviewM(apiclient.New(h.HTTPURL, h.AdminToken))
	require.Equal(t, 4, row, "the whole fleet: the locker's free cells")
	require.Equal(t, 4, freeM(ups), "dhl's quota is used up: nothing kept any more")

	// A bigger quota keeps cells for dhl: ups gets 4 free - 2 kept = 2.
	_, err = h.Admin.SetCarrierQuotas(ctx, "dhl", shared, map[string]int{"M": 4})
	require.NoError(t, err)
	require.Equal(t, 2, freeM(ups))
	require.Equal(t, 2, freeM(dhl))
	for range 2 {
		_, err = reserve(ups)
		require.NoError(t, err)
	}
	_, err = reserve(ups)
	require.True(t, apiclient.IsCode(err, "carrier_quota"), "the 2 free cells are kept for dhl: %v", err)
	require.Contains(t, err.Error(), "kept for carriers with a quota")
	_, err = reserve(gls)
	require.True(t, apiclient.IsCode(err, "carrier_quota"), "gls has no quota either: %v", err)
	require.Equal(t, 0, freeM(ups))
	_, err = reserve(dhl)
	require.NoError(t, err, "dhl takes a kept cell")

	// The usage answer: per carrier, lockers and cells used / quota per size.
	uses, err := h.Admin.CarrierUsage(ctx)
	require.NoError(t, err)
	by := map[string]apiclient.CarrierUse{}
	for _, u := range uses {
		by[u.ID] = u
	}
	require.Equal(t, 1, by["dhl"].Lockers)
	require.Equal(t, 3, by["dhl"].Sizes["M"].Used)
	require.Equal(t, 4, *by["dhl"].Sizes["M"].Quota)
	require.Equal(t, []apiclient.CarrierQuotaUse{{Locker: shared, Size: "M", Cells: 4, Used: 3, Free: 1}}, by["dhl"].Quotas)
	require.Equal(t, 2, by["ups"].Sizes["M"].Used)
	require.Nil(t, by["ups"].Sizes["M"].Quota, "no quota: all its lockers")
	require.Equal(t, 2, by["gls"].Lockers)
	// A partner sees only its own carrier.
	mine, err := ups.CarrierUsage(ctx)
	require.NoError(t, err)
	require.Len(t, mine, 1)
	require.Equal(t, "ups", mine[0].ID)
	_, err = ups.Carrier(ctx, "dhl")
	require.True(t, apiclient.IsCode(err, "not_found"), "%v", err)
	require.GreaterOrEqual(t, h.Metric("lockerhub_parcels_quota_refusals_total"), 4.0)

	// Unassigned, the segment's lockers are not gls's any more.
	_, err = h.Admin.UnassignCarrier(ctx, "gls", "segments", "north")
	require.NoError(t, err)
	require.Empty(t, lockersOf(gls))
	resp, err := http.Get(h.HTTPURL + "/api/v1/carriers")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	var e map[string]any
	require.NoError(t, json.Unmarshal(body, &e))
}
