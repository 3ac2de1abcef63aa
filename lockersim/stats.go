package lockersim

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Stats are the counters of a simulation (all lockers together).
type Stats struct {
	Lockers        atomic.Int64 // lockers simulated
	Connected      atomic.Int64 // connections up now
	Connects       atomic.Int64 // successful connects (CONNACK and SUBACK)
	ConnectErrors  atomic.Int64 // failed connects
	Published      atomic.Int64 // QoS 1 publishes written (first sends and republishes)
	Acked          atomic.Int64 // PUBACKs that completed a message
	Republished    atomic.Int64 // messages sent again after a reconnect
	Dropped        atomic.Int64 // messages not queued: outbox full
	Discarded      atomic.Int64 // messages thrown away by the --no-republish fault
	AcksIgnored    atomic.Int64 // PUBACKs ignored by the --drop-acks-pct fault
	StrayAcks      atomic.Int64 // PUBACKs for no message in flight
	Refused        atomic.Int64 // PUBACKs with a failure reason code (MQTT 5)
	BadMessages    atomic.Int64 // undecodable or misaddressed messages from the hub
	RPCs           atomic.Int64 // rpc/req handled
	VideoStarts    atomic.Int64 // video.start answered with an SDP answer
	RPCRepeats     atomic.Int64 // … answered from the key cache
	RPCExpired     atomic.Int64 // … refused as expired
	Events         atomic.Int64 // events emitted
	Boots          atomic.Int64 // simulated reboots
	CodesOffline   atomic.Int64 // pickup codes accepted offline (cells opened by the locker itself)
	CodesRefused   atomic.Int64 // pickup codes refused offline (wrong or rate-limited)
	OTAStarted     atomic.Int64 // updates started by ota.install
	OTAInstalled   atomic.Int64 // … installed
	OTAFailed      atomic.Int64 // … failed (reported on ota/status)
	OTAResumed     atomic.Int64 // download requests with Range (resumes)
	OTAInterrupted atomic.Int64 // downloads cut half-way by the fault

	mu      sync.Mutex
	lastErr string
}

func (s *Stats) noteErr(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// StatsSnapshot is Stats at one moment, as JSON.
type StatsSnapshot struct {
	Lockers        int64  `json:"lockers"`
	Connected      int64  `json:"connected"`
	Connects       int64  `json:"connects"`
	ConnectErrors  int64  `json:"connect_errors"`
	Published      int64  `json:"published"`
	Acked          int64  `json:"acked"`
	Republished    int64  `json:"republished"`
	Dropped        int64  `json:"dropped"`
	Discarded      int64  `json:"discarded"`
	AcksIgnored    int64  `json:"acks_ignored"`
	StrayAcks      int64  `json:"stray_acks"`
	Refused        int64  `json:"refused"`
	BadMessages    int64  `json:"bad_messages"`
	RPCs           int64  `json:"rpcs"`
	RPCRepeats     int64  `json:"rpc_repeats"`
	RPCExpired     int64  `json:"rpc_expired"`
	Events         int64  `json:"events"`
	Boots          int64  `json:"boots"`
	CodesOffline   int64  `json:"codes_offline"`
	CodesRefused   int64  `json:"codes_refused"`
	OTAStarted     int64  `json:"ota_started"`
	OTAInstalled   int64  `json:"ota_installed"`
	OTAFailed      int64  `json:"ota_failed"`
	OTAResumed     int64  `json:"ota_resumed"`
	OTAInterrupted int64  `json:"ota_interrupted"`
	LastError      string `json:"last_error,omitempty"`
}

// Snapshot reads every counter.
func (s *Stats) Snapshot() StatsSnapshot {
	s.mu.Lock()
	le := s.lastErr
	s.mu.Unlock()
	return StatsSnapshot{
		Lockers: s.Lockers.Load(), Connected: s.Connected.Load(), Connects: s.Connects.Load(),
		ConnectErrors: s.ConnectErrors.Load(), Published: s.Published.Load(), Acked: s.Acked.Load(),
		Republished: s.Republished.Load(), Dropped: s.Dropped.Load(), Discarded: s.Discarded.Load(),
		AcksIgnored: s.AcksIgnored.Load(), StrayAcks: s.StrayAcks.Load(), Refused: s.Refused.Load(),
		BadMessages: s.BadMessages.Load(), RPCs: s.RPCs.Load(), RPCRepeats: s.RPCRepeats.Load(),
		RPCExpired: s.RPCExpired.Load(), Events: s.Events.Load(), Boots: s.Boots.Load(),
		CodesOffline: s.CodesOffline.Load(), CodesRefused: s.CodesRefused.Load(), LastError: le,
		OTAStarted: s.OTAStarted.Load(), OTAInstalled: s.OTAInstalled.Load(), OTAFailed: s.OTAFailed.Load(),
		OTAResumed: s.OTAResumed.Load(), OTAInterrupted: s.OTAInterrupted.Load(),
	}
}

// StatusLine is the one-line status printed every 10 s.
func (s StatsSnapshot) StatusLine() string {
	line := fmt.Sprintf("lockersim: %d/%d connected, %d msgs acked, %d published, %d republished, %d dropped (outbox full), %d connect errors, %d rpcs",
		s.Connected, s.Lockers, s.Acked, s.Published, s.Republished, s.Dropped, s.ConnectErrors, s.RPCs)
	if s.Connected < s.Lockers && s.LastError != "" {
		line += "; last error: " + s.LastError
	}
	return line
}
