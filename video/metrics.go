package video

import "github.com/prometheus/client_golang/prometheus"

// metrics of the relay; no locker IDs as labels (10,000 lockers).
type metrics struct {
	pcs                    prometheus.GaugeFunc
	starts                 *prometheus.CounterVec // outcome
	ended                  *prometheus.CounterVec // reason
	refused                *prometheus.CounterVec // reason
	viewersAdded           prometheus.Counter
	viewersRemoved         *prometheus.CounterVec // reason
	connected              prometheus.Counter
	upPackets, upBytes     prometheus.Counter
	fwdPackets, fwdBytes   prometheus.Counter
	pliReceived, pliSent   prometheus.Counter
	pliDropped             prometheus.Counter
	badAnswers             prometheus.Counter
	stopsDropped           prometheus.Counter
	recordings             *prometheus.CounterVec // outcome
	recordingBytes         prometheus.Counter
	recordingPacketsLost   prometheus.Counter
	retentionDeleted       prometheus.Counter
	streamsG, viewersG     prometheus.GaugeFunc
	recordingsActive       prometheus.GaugeFunc
	recordingsRefused      prometheus.Counter
	recordingsDiskBytesObs prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, r *Relay) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_" + name, Help: help})
	}
	vec := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_video_" + name, Help: help}, []string{label})
	}
	gauge := func(name, help string, f func() float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockerhub_video_" + name, Help: help}, f)
	}
	m := &metrics{
		pcs:                  gauge("peer_connections", "Open WebRTC peer connections (upstreams and viewers).", func() float64 { return float64(r.Stats().PeerConnections) }),
		streamsG:             gauge("streams", "Lockers whose camera stream runs or is starting.", func() float64 { return float64(r.Stats().Streams) }),
		viewersG:             gauge("viewers", "Viewers of all streams.", func() float64 { return float64(r.Stats().Viewers) }),
		starts:               vec("stream_starts_total", "video.start attempts by outcome (ok, offline, no_answer, refused, error).", "outcome"),
		ended:                vec("streams_ended_total", "Streams ended, by reason (idle, upstream_ended, upstream_failed, start_failed, shutdown).", "reason"),
		refused:              vec("viewers_refused_total", "Viewers refused, by reason (bad_offer, offline, too_many_viewers, too_many_streams).", "reason"),
		viewersAdded:         counter("viewers_added_total", "Viewers answered (WHEP 201)."),
		viewersRemoved:       vec("viewers_removed_total", "Viewers gone, by reason (left, ice_failed, never_connected, stream_ended).", "reason"),
		connected:            counter("viewers_connected_total", "Viewers whose peer connection reached connected."),
		upPackets:            counter("upstream_packets_total", "RTP packets received from lockers."),
		upBytes:              counter("upstream_bytes_total", "RTP bytes received from lockers."),
		fwdPackets:           counter("forwarded_packets_total", "RTP packets sent to viewers (one per viewer)."),
		fwdBytes:             counter("forwarded_bytes_total", "RTP bytes sent to viewers (one copy per viewer)."),
		pliReceived:          counter("keyframe_requests_total", "Keyframe requests (PLI, FIR) from viewers."),
		pliSent:              counter("keyframe_requests_forwarded_total", "PLIs sent upstream to lockers."),
		pliDropped:           counter("keyframe_requests_limited_total", "Keyframe requests not forwarded (rate limit)."),
		badAnswers:           counter("bad_answers_total", "video.start answers from lockers that did not decode or apply."),
		stopsDropped:         counter("stops_dropped_total", "video.stop requests not sent (queue full)."),
		recordings:           vec("recordings_total", "Recordings finished, by outcome (ok, no_video, error, refused).", "outcome"),
		recordingBytes:       counter("recording_bytes_total", "Bytes written to recordings."),
		recordingPacketsLost: counter("recording_packets_dropped_total", "RTP packets a recorder could not take (its queue was full)."),
		retentionDeleted:     counter("recordings_deleted_total", "Recordings deleted by retention (age or total size)."),
		recordingsActive: gauge("recordings_active", "Recordings in progress.", func() float64 {
			if r.rec == nil {
				return 0
			}
			return float64(r.rec.Active())
		}),
		recordingsRefused: counter("recordings_refused_total", "Recordings refused: too many at once."),
	}
	if reg != nil {
		reg.MustRegister(m.pcs, m.streamsG, m.viewersG, m.starts, m.ended, m.refused, m.viewersAdded, m.viewersRemoved, m.connected,
			m.upPackets, m.upBytes, m.fwdPackets, m.fwdBytes, m.pliReceived, m.pliSent, m.pliDropped, m.badAnswers, m.stopsDropped,
			m.recordings, m.recordingBytes, m.recordingPacketsLost, m.retentionDeleted, m.recordingsActive, m.recordingsRefused)
	}
	return m
}
