package video

import "github.com/prometheus/client_golang/prometheus"

// metrics of the relay; no locker IDs as labels (10,000 lockers).
type metrics struct {
	pcs                  prometheus.GaugeFunc
	starts               *prometheus.CounterVec // outcome
	ended                *prometheus.CounterVec // reason
	refused              *prometheus.CounterVec // reason
	viewersAdded         prometheus.Counter
	viewersRemoved       *prometheus.CounterVec // reason
	connected            prometheus.Counter
	upPackets, upBytes   prometheus.Counter
	fwdPackets, fwdBytes prometheus.Counter
	pliReceived, pliSent prometheus.Counter
	pliDropped           prometheus.Counter
	badAnswers           prometheus.Counter
	stopsDropped         prometheus.Counter
	recordings           *prometheus.CounterVec // outcome
	recordingBytes       prometheus.Counter
	recordingPacketsLost prometheus.Counter
	retentionDeleted     prometheus.Counter
	streamsG, viewersG   prometheus.GaugeFunc
	recordingsActive     prometheus.GaugeFunc
	recordingsRefused    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, r *Relay) *metrics {
	m := &metrics{
		pcs:                  prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockerhub_video_peer_connections", Help: "Open WebRTC peer connections (upstreams and viewers)."}, func() float64 { return float64(r.Stats().PeerConnections) }),
		streamsG:             prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockerhub_video_streams", Help: "Lockers whose camera stream runs or is starting."}, func() float64 { return float64(r.Stats().Streams) }),
		viewersG:             prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockerhub_video_viewers", Help: "Viewers of all streams."}, func() float64 { return float64(r.Stats().Viewers) }),
		starts:               prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_video_stream_starts_total", Help: "video.start attempts by outcome (ok, offline, no_answer, refused, error)."}, []string{"outcome"}),
		ended:                prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_video_streams_ended_total", Help: "Streams ended, by reason (idle, upstream_ended, upstream_failed, start_failed, shutdown)."}, []string{"reason"}),
		refused:              prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_video_viewers_refused_total", Help: "Viewers refused, by reason (bad_offer, offline, too_many_viewers, too_many_streams)."}, []string{"reason"}),
		viewersAdded:         prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_viewers_added_total", Help: "Viewers answered (WHEP 201)."}),
		viewersRemoved:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_video_viewers_removed_total", Help: "Viewers gone, by reason (left, ice_failed, never_connected, stream_ended)."}, []string{"reason"}),
		connected:            prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_viewers_connected_total", Help: "Viewers whose peer connection reached connected."}),
		upPackets:            prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_upstream_packets_total", Help: "RTP packets received from lockers."}),
		upBytes:              prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_upstream_bytes_total", Help: "RTP bytes received from lockers."}),
		fwdPackets:           prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_forwarded_packets_total", Help: "RTP packets sent to viewers (one per viewer)."}),
		fwdBytes:             prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_forwarded_bytes_total", Help: "RTP bytes sent to viewers (one copy per viewer)."}),
		pliReceived:          prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_keyframe_requests_total", Help: "Keyframe requests (PLI, FIR) from viewers."}),
		pliSent:              prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_keyframe_requests_forwarded_total", Help: "PLIs sent upstream to lockers."}),
		pliDropped:           prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_keyframe_requests_limited_total", Help: "Keyframe requests not forwarded (rate limit)."}),
		badAnswers:           prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_bad_answers_total", Help: "video.start answers from lockers that did not decode or apply."}),
		stopsDropped:         prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_stops_dropped_total", Help: "video.stop requests not sent (queue full)."}),
		recordings:           prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockerhub_video_recordings_total", Help: "Recordings finished, by outcome (ok, no_video, error, refused)."}, []string{"outcome"}),
		recordingBytes:       prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_recording_bytes_total", Help: "Bytes written to recordings."}),
		recordingPacketsLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_recording_packets_dropped_total", Help: "RTP packets a recorder could not take (its queue was full)."}),
		retentionDeleted:     prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_recordings_deleted_total", Help: "Recordings deleted by retention (age or total size)."}),
		recordingsActive: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockerhub_video_recordings_active", Help: "Recordings in progress."}, func() float64 {
			if r.rec == nil {
				return 0
			}
			return float64(r.rec.Active())
		}),
		recordingsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_video_recordings_refused_total", Help: "Recordings refused: too many at once."}),
	}
	if reg != nil {
		reg.MustRegister(m.pcs, m.streamsG, m.viewersG, m.starts, m.ended, m.refused, m.viewersAdded, m.viewersRemoved, m.connected,
			m.upPackets, m.upBytes, m.fwdPackets, m.fwdBytes, m.pliReceived, m.pliSent, m.pliDropped, m.badAnswers, m.stopsDropped,
			m.recordings, m.recordingBytes, m.recordingPacketsLost, m.retentionDeleted, m.recordingsActive, m.recordingsRefused)
	}
	return m
}
