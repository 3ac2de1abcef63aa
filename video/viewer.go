package video

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/lockerhub/lockerhub/audit"
)

// viewer is one peer connection that sends a locker's stream.
type viewer struct {
	id      string
	s       *stream
	pc      *webrtc.PeerConnection
	who     string // the caller's name, for logs
	owner   string // the caller's stable identity: who may end the viewer
	created time.Time
	timer   *time.Timer // ConnectTimeout: not connected by then, removed
}

// Viewer is a viewer as the WHEP endpoint reports it.
type Viewer struct {
	ID     string // the WHEP resource
	Answer string // the hub's SDP answer, ICE gathered
}

// AddViewer starts (or joins) the locker's stream and answers a viewer's SDP
// offer (WHEP). who names the viewer in logs; owner is the caller's stable
// identity (e.g. "user:7"), the only one besides an admin who may end it
// (RemoveViewer). It waits for the upstream up to StartTimeout.
func (r *Relay) AddViewer(ctx context.Context, lockerID, offer, who, owner string) (Viewer, error) {
	if err := ValidateOffer(offer); err != nil {
		r.m.refused.WithLabelValues("bad_offer").Inc()
		return Viewer{}, err
	}
	if !r.devices.Online(lockerID) {
		r.m.refused.WithLabelValues("offline").Inc()
		return Viewer{}, fmt.Errorf("%w: %s", ErrOffline, lockerID)
	}
	s, err := r.acquire(lockerID, "viewer")
	if err != nil {
		return Viewer{}, err
	}
	v, err := r.setupViewer(ctx, s, offer, who, owner)
	if err != nil {
		r.release(s, "viewer")
		return Viewer{}, err
	}
	return v, nil
}

func (r *Relay) setupViewer(ctx context.Context, s *stream, offer, who, owner string) (Viewer, error) {
	wctx, cancel := context.WithTimeout(ctx, r.cfg.StartTimeout)
	defer cancel()
	if err := s.wait(wctx); err != nil {
		return Viewer{}, err
	}
	pc, err := r.newPC()
	if err != nil {
		return Viewer{}, err
	}
	v := &viewer{id: newID(), s: s, pc: pc, who: who, owner: owner, created: time.Now()}
	v.timer = time.AfterFunc(r.cfg.ConnectTimeout, func() {
		if pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			r.removeViewer(v, "never_connected")
		}
	})
	answer, err := func() (string, error) {
		sender, err := pc.AddTrack(s.track)
		if err != nil {
			return "", err
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
		}
		if !sendsTrack(pc) {
			return "", fmt.Errorf("%w: it accepts no codec of the locker's stream (%s)", ErrBadOffer, s.track.Codec().MimeType)
		}
		ans, err := pc.CreateAnswer(nil)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(ans); err != nil {
			return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
		}
		select {
		case <-gathered:
		case <-wctx.Done():
			return "", fmt.Errorf("ICE gathering: %w", wctx.Err())
		}
		pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
			switch st {
			case webrtc.PeerConnectionStateConnected:
				v.timer.Stop()
				r.m.connected.Inc()
				r.keyframe(s) // a new viewer needs a keyframe to start
			case webrtc.PeerConnectionStateFailed:
				r.removeViewer(v, "ice_failed")
			}
		})
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.readRTCP(s, sender) }()
		return pc.LocalDescription().SDP, nil
	}()
	if err != nil {
		v.timer.Stop()
		r.closePC(pc)
		if errors.Is(err, ErrBadOffer) {
			r.m.refused.WithLabelValues("bad_offer").Inc()
		}
		return Viewer{}, err
	}
	r.mu.Lock()
	if _, open := r.pcs[pc]; !open || s.ended {
		r.mu.Unlock()
		v.timer.Stop()
		r.closePC(pc)
		return Viewer{}, ErrStreamEnded
	}
	s.pending--
	s.viewers[v.id] = v
	s.nViewers.Store(int32(len(s.viewers)))
	r.mu.Unlock()
	r.m.viewersAdded.Inc()
	r.log.Info("video viewer joined", "locker", s.locker, "viewer", v.id, "who", v.who)
	if err := r.audit(ctx, audit.Entry{Action: "view", ObjectType: "video", ObjectID: s.locker, After: map[string]any{"viewer": v.id}}); err != nil {
		r.removeViewer(v, "audit_failed")
		return Viewer{}, err
	}
	return Viewer{ID: v.id, Answer: answer}, nil
}

// sendsTrack reports whether the negotiated transceivers send our track.
func sendsTrack(pc *webrtc.PeerConnection) bool {
	for _, t := range pc.GetTransceivers() {
		if t.Sender() != nil && t.Sender().Track() != nil && t.Mid() != "" {
			params := t.Sender().GetParameters()
			if len(params.Codecs) > 0 {
				return true
			}
		}
	}
	return false
}

// readRTCP reads a viewer's RTCP (the interceptors need it read) and
// forwards its keyframe requests upstream, rate-limited.
func (r *Relay) readRTCP(s *stream, sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				r.m.pliReceived.Inc()
				r.keyframe(s)
			}
		}
	}
}

// RemoveViewer ends a viewer (WHEP DELETE); the audit record names the
// caller of ctx. With owner set, only the viewer's own owner may end it
// (ErrNotOwner otherwise, and the viewer goes on); empty owner: any viewer
// (an admin).
func (r *Relay) RemoveViewer(ctx context.Context, lockerID, id, owner string) error {
	r.mu.Lock()
	s, ok := r.streams[lockerID]
	var v *viewer
	if ok {
		v = s.viewers[id]
	}
	r.mu.Unlock()
	if v == nil {
		return fmt.Errorf("%w: no viewer %s of locker %s", ErrNotFound, id, lockerID)
	}
	if owner != "" && owner != v.owner {
		return fmt.Errorf("%w: viewer %s of locker %s", ErrNotOwner, id, lockerID)
	}
	r.removeViewer(v, "left")
	return r.audit(ctx, audit.Entry{Action: "view_end", ObjectType: "video", ObjectID: lockerID,
		After: map[string]any{"viewer": id, "watched_s": int(time.Since(v.created).Seconds())}})
}

// audit records a viewer's start or end (nothing without recordings'
// database, as in the package's own tests).
func (r *Relay) audit(ctx context.Context, e audit.Entry) error {
	if r.rec == nil {
		return nil
	}
	return audit.Record(ctx, r.rec.pool, e)
}

// removeViewer takes v off its stream (which goes idle without viewers) and
// closes its peer connection.
func (r *Relay) removeViewer(v *viewer, reason string) {
	r.mu.Lock()
	s := v.s
	if s.viewers[v.id] != v {
		r.mu.Unlock()
		r.closeViewer(v, reason) // already taken off (stream ended): make sure it is closed
		return
	}
	delete(s.viewers, v.id)
	s.nViewers.Store(int32(len(s.viewers)))
	if !s.inUse() {
		s.idleSince = time.Now()
	}
	r.mu.Unlock()
	r.closeViewer(v, reason)
}

func (r *Relay) closeViewer(v *viewer, reason string) {
	if v.timer != nil {
		v.timer.Stop()
	}
	if !r.closePC(v.pc) {
		return
	}
	r.m.viewersRemoved.WithLabelValues(reason).Inc()
	r.log.Info("video viewer left", "locker", v.s.locker, "viewer", v.id, "reason", reason, "watched", time.Since(v.created).Round(time.Second))
}
