package broker

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connects        prometheus.Counter
	refusals        *prometheus.CounterVec // stage (tls|connect), reason
	disconnects     *prometheus.CounterVec // reason
	takeovers       prometheus.Counter
	aclDenied       *prometheus.CounterVec // action
	willsStripped   prometheus.Counter
	acceptThrottled prometheus.Counter
	acceptErrors    prometheus.Counter
	handshaking     prometheus.Gauge
	messagesIn      *prometheus.CounterVec // kind
	bytesIn         *prometheus.CounterVec
	messagesOut     *prometheus.CounterVec
	bytesOut        *prometheus.CounterVec
	unhandled       *prometheus.CounterVec
	invalid         *prometheus.CounterVec // kind

	unacked           prometheus.Gauge
	acksSent          prometheus.Counter
	acksWithheld      prometheus.Counter
	duplicatesPending prometheus.Counter
	quotaExceeded     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, connected func() float64) *metrics {
	m := &metrics{
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_connects_total", Help: "Locker sessions established."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_refusals_total", Help: "Connections refused, by stage (tls, connect) and reason."},
			[]string{"stage", "reason"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_disconnects_total", Help: "Locker sessions ended, by reason."}, []string{"reason"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_takeovers_total", Help: "Sessions replaced by a newer connection of the same locker."}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_acl_denied_total", Help: "Publishes and subscriptions refused by the ACL."}, []string{"action"}),
		willsStripped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_wills_stripped_total", Help: "Will messages removed from CONNECT packets."}),
		acceptThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_accept_throttled_total", Help: "Accepted connections that waited for the accept rate limit or a handshake slot."}),
		acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_accept_errors_total", Help: "Failed accepts on the lockers' listener (e.g. out of file descriptors); the listener retries."}),
		handshaking: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lockerhub_broker_tls_handshakes_in_progress", Help: "TLS handshakes running now."}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_messages_received_total", Help: "Publishes received from lockers, by topic kind."}, []string{"kind"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_received_bytes_total", Help: "Payload bytes received from lockers, by topic kind."}, []string{"kind"}),
		messagesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_messages_sent_total", Help: "Publishes sent to lockers, by topic kind."}, []string{"kind"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_sent_bytes_total", Help: "Payload bytes sent to lockers, by topic kind."}, []string{"kind"}),
		unhandled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_messages_unhandled_total", Help: "Device publishes of a kind no component handles yet (acknowledged, not stored)."}, []string{"kind"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_messages_invalid_total", Help: "Device publishes refused as invalid (PUBACK 0x99 for MQTT 5), by topic kind."}, []string{"kind"}),
		unacked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lockerhub_broker_unacked_messages", Help: "QoS 1 messages received and not yet acknowledged (waiting to be stored)."}),
		acksSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_acks_sent_total", Help: "PUBACKs sent after the message was settled."}),
		acksWithheld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_acks_withheld_total", Help: "QoS 1 messages never acknowledged (connection ended or hub overloaded first); the locker resends them."}),
		duplicatesPending: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_duplicates_pending_total", Help: "DUP redeliveries of a message still waiting for its PUBACK (not handled twice)."}),
		quotaExceeded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_broker_unacked_quota_exceeded_total", Help: "Lockers disconnected (0x97) for too many unacknowledged messages."}),
	}
	reg.MustRegister(m.unacked, m.acksSent, m.acksWithheld, m.duplicatesPending, m.quotaExceeded,
		m.connects, m.refusals, m.disconnects, m.takeovers, m.aclDenied, m.willsStripped,
		m.acceptThrottled, m.acceptErrors, m.handshaking, m.messagesIn, m.bytesIn, m.messagesOut, m.bytesOut, m.unhandled, m.invalid,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lockerhub_broker_connected_lockers", Help: "Lockers with a live session."}, connected))
	return m
}
