package web

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/audit"
)

// The audit log. Every request carries an audit.Actor in its context (set
// by requestActor, filled with the principal by authenticate): domain
// packages record their changes with it in their own transaction.
//
// The actor's address is r.RemoteAddr's IP, unless that IP is one of
// Deps.TrustedProxies: then it is the right-most address of X-Forwarded-For
// that is not a trusted proxy (the one the proxy saw). Without trusted
// proxies X-Forwarded-For is ignored: anyone can send it.

// RequestIDHeader names a request in logs and audit records; a client may
// send its own (1–64 of A-Z a-z 0-9 . _ -), else the hub makes one. It is
// in every API response.
const RequestIDHeader = "X-Request-ID"

func (a *API) auditRoutes() []route {
	return []route{
		{"GET", "/api/v1/audit", false, a.listAudit},
	}
}

// requestActor gives the request an anonymous actor with its address and
// request id, and answers the request id.
func (a *API) requestActor(w http.ResponseWriter, r *http.Request) *http.Request {
	id := r.Header.Get(RequestIDHeader)
	if !validRequestID(id) {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	w.Header().Set(RequestIDHeader, id)
	act := audit.Actor{Kind: audit.KindAnonymous, Addr: clientAddr(r, a.d.TrustedProxies), RequestID: id}
	return r.WithContext(audit.WithActor(r.Context(), act))
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// principalActor is the audit actor of an authenticated principal.
func principalActor(r *http.Request, p access.Principal) audit.Actor {
	act := audit.ActorFrom(r.Context())
	act.Name, act.Role = p.Name, p.Role
	switch {
	case p.UserID != 0:
		act.Kind, act.ID = audit.KindUser, strconv.FormatInt(p.UserID, 10)
	case p.ClientID != 0:
		act.Kind, act.ID = audit.KindClient, strconv.FormatInt(p.ClientID, 10)
	default:
		act.Kind, act.ID = audit.KindToken, strconv.FormatInt(p.TokenID, 10)
	}
	return act
}

// clientAddr is the caller's IP address (see the comment at the top).
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !isTrusted(ip, trusted) {
		return host
	}
	xff := r.Header.Values("X-Forwarded-For")
	var hops []string
	for _, v := range xff {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(hops[i])
		if err != nil {
			break // garbage: stop at the last address we can vouch for
		}
		ip = hop.Unmap()
		if !isTrusted(ip, trusted) {
			break
		}
	}
	return ip.String()
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	ip = ip.Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// listAudit answers GET /api/v1/audit: records newest first, a page at a
// time (next_cursor), or with format=csv the whole selection as CSV (up
// to audit.MaxExport rows; X-Next-Cursor names the rest).
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	// Admins only, whatever the role matrix says: the log shows everyone's doings.
	if p, _ := principalFrom(r.Context()); p.Role != access.RoleAdmin {
		writeError(w, http.StatusForbidden, "forbidden", "only admins may read the audit log")
		return
	}
	if a.d.Audit == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the audit log is not wired in this hub")
		return
	}
	q := r.URL.Query()
	f := audit.Filter{Actor: q.Get("actor"), ObjectType: q.Get("object_type"), ObjectID: q.Get("object_id"),
		Action: q.Get("action"), Cursor: q.Get("cursor")}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if s := q.Get(p.name); s != "" {
			t, err := parseTimeOrAgo(s)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid", p.name+": want an RFC 3339 time such as 2026-11-23T03:12:00Z or a duration ago such as 24h")
				return
			}
			*p.t = t
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "limit must be a number")
			return
		}
		f.Limit = n
	}
	switch q.Get("format") {
	case "", "json":
		p, err := a.d.Audit.List(r.Context(), f)
		if errors.Is(err, audit.ErrInvalid) {
			writeError(w, http.StatusBadRequest, "invalid", err.Error())
			return
		}
		if err != nil {
			a.internal(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, p)
	case "csv":
		cw := &csvResponse{w: w}
		next, err := a.d.Audit.ExportCSV(r.Context(), f, cw)
		switch {
		case errors.Is(err, audit.ErrInvalid) && !cw.started:
			writeError(w, http.StatusBadRequest, "invalid", err.Error())
		case err != nil && !cw.started:
			a.internal(w, r, err)
		case err != nil:
			a.d.Logger.Error("audit export failed midway", "error", err) // the client sees a short file
		case next != "":
			// The header is gone already: a trailer says where the rest starts.
			w.Header().Set(http.TrailerPrefix+"X-Next-Cursor", next)
		}
	default:
		writeError(w, http.StatusBadRequest, "invalid", "format must be json or csv")
	}
}

// csvResponse sends the CSV headers with the first byte, so an invalid
// filter can still be answered with a JSON 400.
type csvResponse struct {
	w       http.ResponseWriter
	started bool
}

func (c *csvResponse) Write(p []byte) (int, error) {
	if !c.started {
		c.started = true
		h := c.w.Header()
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="audit-`+time.Now().UTC().Format("20060102T150405Z")+`.csv"`)
		h.Set("Cache-Control", "no-store")
	}
	return c.w.Write(p)
}

// parseTimeOrAgo reads an RFC 3339 time or a Go duration meaning that long ago.
func parseTimeOrAgo(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	return time.Parse(time.RFC3339Nano, strings.ReplaceAll(s, " ", "+"))
}
