package fleet

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// MaxNearRadiusKm bounds a search around a point.
const MaxNearRadiusKm = 100

// Nearby is a locker and its distance from a point.
type Nearby struct {
	Locker
	DistanceKm float64 `json:"distance_km"`
}

// Near returns the enabled lockers with coordinates within radiusKm of
// (lat, lon), nearest first, that carrier may use ("" for any). The
// distance is the great-circle distance (haversine, earth radius 6,371 km):
// for choosing a locker, not for routing.
func (r *Registry) Near(ctx context.Context, lat, lon, radiusKm float64, carrier string) ([]Nearby, error) {
	if err := validCoordinates(&lat, &lon); err != nil {
		return nil, err
	}
	if !(radiusKm > 0 && radiusKm <= MaxNearRadiusKm) {
		return nil, invalid("radius_km", "must be above 0 and at most %d, got %v", MaxNearRadiusKm, radiusKm)
	}
	rows, err := r.pool.Query(ctx, `SELECT `+lockerColumns+`, d FROM (
		SELECT *, 6371.0 * 2 * asin(least(1, sqrt(
			power(sin(radians(lat - $1) / 2), 2) + cos(radians($1)) * cos(radians(lat)) * power(sin(radians(lon - $2) / 2), 2)))) AS d
		FROM fleet_lockers
		WHERE enabled AND lat IS NOT NULL AND lon IS NOT NULL AND ($4 = '' OR `+carrierAccessSQL("$4")+`)) AS x
		WHERE d <= $3 ORDER BY d, id`, lat, lon, radiusKm, carrier)
	if err != nil {
		return nil, fmt.Errorf("lockers near a point: %w", err)
	}
	out := []Nearby{}
	var n Nearby
	_, err = pgx.ForEachRow(rows, append(lockerFields(&n.Locker), &n.DistanceKm), func() error {
		r.fix(&n.Locker)
		out = append(out, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lockers near a point: %w", err)
	}
	return out, nil
}
