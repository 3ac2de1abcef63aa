package fleet

import "github.com/prometheus/client_golang/prometheus"

var (
	lockersDesc = prometheus.NewDesc("lockerhub_fleet_lockers",
		"Registered lockers by presence: online, offline, unknown (after a hub start, until the reconnect window has passed).", []string{"presence"}, nil)
	onBatteryDesc = prometheus.NewDesc("lockerhub_fleet_lockers_on_battery",
		"Lockers whose last report says they run on battery (mains lost).", nil, nil)
	doorsOpenDesc = prometheus.NewDesc("lockerhub_fleet_doors_open",
		"Cell doors reported open, over the fleet.", nil, nil)
	freeCellsDesc = prometheus.NewDesc("lockerhub_fleet_free_cells",
		"Cells free for loading (empty, closed, not jammed, not reserved or held), by size.", []string{"size"}, nil)
	heldDesc = prometheus.NewDesc("lockerhub_fleet_cells_held_for_returns",
		"Empty cells held for returns (not counted as free for loading), by size.", []string{"size"}, nil)
)

// OverviewCollector exports the fleet overview's totals at scrape time (kept
// as the rows change, so a scrape does not walk the fleet; no locker IDs as
// labels).
type OverviewCollector struct{ O *Overview }

func (c OverviewCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lockersDesc
	ch <- onBatteryDesc
	ch <- doorsOpenDesc
	ch <- freeCellsDesc
	ch <- heldDesc
}

func (c OverviewCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.O.Summary(RowFilter{})
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(lockersDesc, s.Online, "online")
	gauge(lockersDesc, s.Offline, "offline")
	gauge(lockersDesc, s.Unknown, "unknown")
	gauge(onBatteryDesc, s.OnBattery)
	gauge(doorsOpenDesc, s.OpenDoors)
	for size, n := range s.FreeCells { // the standard sizes always, others while a locker has them
		gauge(freeCellsDesc, n, size)
	}
	for size, n := range s.HeldForReturns {
		gauge(heldDesc, n, size)
	}
}
